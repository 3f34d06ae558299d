-- marts.treatment_line: one row per treatment line of a person, assessed or not, whichever sources
-- report it, with the board submission it answers: the one definition of "a person's line" that
-- marts.response_line (its assessed lines) and marts.board_response (n_treated) read.
--
-- A line is counted once per person, whichever sources report it: a person known to several
-- sources has one patient_id, and their lines are matched across sources by patient, drugs and
-- start date (a line whose start date is unknown stays one line per source and line number).
-- Definitions
--   line: the treatments a source records under one line number for a patient (a treatment
--     without a line number is a line of its own); drugs sorted, start = the earliest start. A line
--     none of whose treatments names its drug (TRT-DRUG-PRESENT warns) is the person's line that
--     names them on the same start date (the first by drugs, of two), else a line of regimen unknown.
--   advice group, the target board registry's comparison (groups of marts.board_advice):
--     followed      the first line started on or after the recommendation of a submission whose
--                   priority-1 targeted advice was followed, that gives one of the advised drugs;
--     not_followed  the first line (any drugs) started on or after the recommendation of a
--                   submission none of whose advice was followed: the control group;
--     not_compared  every other line (other studies, later lines, lower-priority advice followed,
--                   follow not known, no targeted advice, start unknown).
--   A line that answers two submissions belongs to the earlier one.

CREATE OR REPLACE TABLE marts.treatment_line AS
WITH source_line AS (
    SELECT
        source_id,
        patient_id,
        coalesce(CAST(line_number AS VARCHAR), treatment_id) AS line_key,
        -- [] when no treatment names its drug: NULL would leave the line without an id.
        coalesce(list_sort(list(DISTINCT drug_name) FILTER (WHERE drug_name IS NOT NULL)), []::VARCHAR[])
            AS drugs,
        min(start_date) AS start_date,
        list(treatment_id ORDER BY treatment_id) AS treatment_ids
    FROM core.treatment
    GROUP BY ALL
),

named_line AS (  -- the drugs of a line that names them, by person and start (of two, the first)
    SELECT patient_id, start_date, min(drugs) AS drugs
    FROM source_line
    WHERE len(drugs) > 0 AND start_date IS NOT NULL
    GROUP BY ALL
),

matched_line AS (
    -- A line naming no drug is the person's line that names them on the same start, if any: one source
    -- leaving a line's drug out does not make it a second line.
    SELECT
        source_line.* REPLACE (CASE WHEN len(source_line.drugs) = 0 THEN coalesce(named_line.drugs, source_line.drugs)
                                    ELSE source_line.drugs END AS drugs),
        coalesce(CAST(source_line.start_date AS VARCHAR), source_id || '|' || line_key) AS match_key
    FROM source_line
    LEFT JOIN named_line USING (patient_id, start_date)
),

person_line AS (
    -- The same line from several sources: one line of the person.
    SELECT
        patient_id,
        drugs,
        start_date,
        md5(patient_id || '|' || array_to_string(drugs, '+') || '|' || match_key) AS line_id,
        count(DISTINCT source_id) AS n_sources,
        list_sort(flatten(list(treatment_ids))) AS treatment_ids
    FROM matched_line
    GROUP BY patient_id, drugs, start_date, match_key
),

submission AS (
    SELECT DISTINCT
        patient_id,
        recommendation_date,
        advice_group,
        string_split(recommended_agents, '|') AS agents
    FROM marts.board_advice
    WHERE priority_rank = 1 AND advice_group IN ('followed', 'not_followed') AND recommendation_date IS NOT NULL
),

endpoint_line AS (
    -- Each submission's line: the first one after the recommendation (that gives an advised drug
    -- when the advice was followed); a line answering two submissions goes to the earlier one.
    SELECT line_id, advice_group, recommendation_date
    FROM (
        SELECT submission.*, person_line.line_id
        FROM submission
        JOIN person_line
            ON person_line.patient_id = submission.patient_id
           AND person_line.start_date >= submission.recommendation_date
           AND (submission.advice_group = 'not_followed' OR list_has_any(person_line.drugs, submission.agents))
        QUALIFY row_number() OVER (
            PARTITION BY submission.patient_id, submission.recommendation_date
            ORDER BY person_line.start_date, person_line.line_id) = 1
    )
    QUALIFY row_number() OVER (PARTITION BY line_id ORDER BY recommendation_date) = 1
)

SELECT
    person_line.line_id,
    person_line.patient_id,
    CASE WHEN len(person_line.drugs) = 0 THEN 'unknown' ELSE array_to_string(person_line.drugs, ' + ') END
        AS regimen,
    person_line.start_date,
    person_line.n_sources,
    coalesce(endpoint_line.advice_group, 'not_compared') AS advice_group,
    endpoint_line.recommendation_date,
    person_line.treatment_ids
FROM person_line
LEFT JOIN endpoint_line USING (line_id)
ORDER BY person_line.patient_id, person_line.start_date, line_id;

COMMENT ON TABLE marts.treatment_line IS 'One row per treatment line of a person, assessed or not: each line counted once whichever sources report it, with the board submission it answers. The lines of marts.response_line and of n_treated in marts.board_response.';
COMMENT ON COLUMN marts.treatment_line.line_id IS 'Identifier of the person''s line: a hash of patient, drugs and start date (source and line number when the start is unknown).';
COMMENT ON COLUMN marts.treatment_line.patient_id IS 'Pseudonymous patient identifier.';
COMMENT ON COLUMN marts.treatment_line.regimen IS 'Drugs of the treatment line, INN sorted and joined by + ; unknown when none of its treatments names its drug.';
COMMENT ON COLUMN marts.treatment_line.start_date IS 'Start of the line: the earliest start of its treatments; NULL when no source gives one.';
COMMENT ON COLUMN marts.treatment_line.n_sources IS 'Sources that report this line (it is counted once). Unit: sources.';
COMMENT ON COLUMN marts.treatment_line.advice_group IS 'The board comparison the line belongs to: the first line after a followed priority-1 targeted advice, the first line after a submission whose advice was not followed (control), or neither. Codes: followed / not_followed / not_compared.';
COMMENT ON COLUMN marts.treatment_line.recommendation_date IS 'Recommendation date of the board submission the line answers (see advice_group); NULL for a line not compared.';
COMMENT ON COLUMN marts.treatment_line.treatment_ids IS 'The treatments of the line, from every source that reports it: treatment_id of core.treatment, sorted.';
