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
--     names them on the same start given alike (the first by drugs, of two), else another source's line given
--     within its period or to a wider period holding it that no other source dates its drugs within (of several,
--     came_first: a line of 14 March takes the drugs of "March 2022", unless a source but its own dates them within
--     March, as "March 2022" may then be that line, or another source dates a second start naming no drug within
--     March, as it may then be either: 14 and 20 March naming none take nothing from it), else a line of regimen
--     unknown.
--   start known only to its month or year (start_date_precision; stored as the first day of its period):
--     the line of the same drugs another source dates more precisely within that period ("March 2022"
--     beside 10 March 2022), which keeps the most precise date; a source's k-th line so dated (by line number)
--     the k-th of those lines (came_first). Lines given to the month are matched first (to starts given to
--     the day), then lines given to the year (to starts given to the day or month, as matched), so "2022",
--     "March 2022" and 14 March 2022 of three sources are one line. Each line matches one start: "2022" beside
--     two lines dated within it is the first, and does not make them one. Lines one source numbers apart stay
--     apart: a start one of its lines has (given or matched) is none of its other lines. A start left to its month
--     or year (none matched) is its own, not the day it is stored as: "March 2022" is not the line of 1 March; a
--     source's two lines "March 2022" are two (its second another source's second "March 2022").
--   advice group, the target board registry's comparison (groups of marts.board_advice):
--     followed      the first line started on or after the recommendation of a submission whose
--                   priority-1 targeted advice was followed, that gives one of the advised drugs;
--     not_followed  the first line (any drugs) started on or after the recommendation of a
--                   submission none of whose advice was followed: the control group;
--     not_compared  every other line (other studies, later lines, lower-priority advice followed,
--                   follow not known, no targeted advice, start unknown).
--   A line that answers two submissions belongs to the earlier one. "Started on or after" a recommendation:
--     not surely before it (surely_before of mart_functions.sql: the last day the start can be on is not before
--     the first day the recommendation can be on: "March 2022" answers 15 March 2022, as response_line keeps an
--     assessment not surely before the line); of several lines, the one that came first (came_first).

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
        -- of the treatments starting on that first day, the most precise one's
        arg_min(coalesce(start_date_precision, 'day'), (start_date, precision_rank(start_date_precision)))
            FILTER (WHERE start_date IS NOT NULL) AS start_date_precision,
        list(treatment_id ORDER BY treatment_id) AS treatment_ids
    FROM core.treatment
    GROUP BY source_id, patient_id, line_key
),

lender AS (
    -- Each line that names its drugs, and whether it lends them to another source's line given within its period
    -- (down_lends): only when no source but its own dates a start of them more precisely within it, and one start
    -- alone naming no drug is so dated by another source (lines as the sources give them, so a line taking drugs makes
    -- no other lend none). Crizotinib "March 2022" beside crizotinib on 3 March may be that line, so 14 March naming
    -- no drug is no crizotinib line; beside 14 and 20 March naming none, it may be either, and neither is; with
    -- nothing else, 14 March is "March 2022".
    SELECT named.*, NOT EXISTS (
        SELECT 1
        FROM source_line AS finer
        WHERE finer.patient_id = named.patient_id
          AND finer.drugs = named.drugs
          AND finer.source_id <> named.source_id
          AND finer.start_date BETWEEN named.start_date AND period_end(named.start_date, named.start_date_precision)
          AND precision_rank(finer.start_date_precision) < precision_rank(named.start_date_precision)
    ) AND (
        -- 14 March naming no drug from two sources is one line: starts are counted, not the sources giving them
        SELECT count(DISTINCT (unnamed.start_date, unnamed.start_date_precision))
        FROM source_line AS unnamed
        WHERE unnamed.patient_id = named.patient_id
          AND len(unnamed.drugs) = 0
          AND unnamed.source_id <> named.source_id
          AND unnamed.start_date BETWEEN named.start_date AND period_end(named.start_date, named.start_date_precision)
          AND precision_rank(unnamed.start_date_precision) < precision_rank(named.start_date_precision)
    ) = 1 AS down_lends
    FROM source_line AS named
    WHERE len(named.drugs) > 0
),

named_line AS (
    -- The drugs a line naming none takes: those of the person's line that names them on the same start given alike
    -- (of two, the first by drugs), else of another source's line given within the line's period ("March 2022" beside
    -- crizotinib on 14 March 2022) or to a wider period holding it when it lends down (lender), of several the one
    -- that came first (came_first: one within its period before a wider one).
    SELECT unnamed.source_id, unnamed.patient_id, unnamed.line_key, named.drugs
    FROM source_line AS unnamed
    JOIN lender AS named
        ON named.patient_id = unnamed.patient_id
       AND len(unnamed.drugs) = 0
       -- the same start given alike: a line "March 2022" is not its source's line of 1 March
       AND ((named.start_date = unnamed.start_date AND named.start_date_precision = unnamed.start_date_precision)
            OR (named.source_id <> unnamed.source_id
                -- a period within the line's
                AND ((named.start_date >= unnamed.start_date
                      AND period_end(named.start_date, named.start_date_precision)
                          <= period_end(unnamed.start_date, unnamed.start_date_precision))
                     -- a wider period holding it, that no other start of its drugs can be: crizotinib "March 2022"
                     -- lent to 14 March beside crizotinib on 3 March made a line no source names
                     OR (named.down_lends
                         AND precision_rank(named.start_date_precision)
                             > precision_rank(unnamed.start_date_precision)
                         AND unnamed.start_date BETWEEN named.start_date
                             AND period_end(named.start_date, named.start_date_precision)))))
    QUALIFY row_number() OVER (
        PARTITION BY unnamed.source_id, unnamed.patient_id, unnamed.line_key
        ORDER BY (named.start_date, named.start_date_precision) <> (unnamed.start_date, unnamed.start_date_precision),
                 came_first(named.start_date, named.start_date_precision), named.drugs) = 1
),

drug_line AS (
    -- A line naming no drug is the person's line that names them (named_line), if any: one source leaving a line's
    -- drug out does not make it a second line. Each is numbered among its source's lines of the same drugs and start
    -- given alike in the source's order (line number): nth. A start left to its month or year is the nth start so
    -- given (start_nth: two lines "March 2022" of one source are two lines); a day is one start.
    SELECT *, CASE WHEN precision_rank(start_date_precision) > 0 THEN nth ELSE 1 END AS start_nth
    FROM (
        SELECT *, row_number() OVER (
            PARTITION BY source_id, patient_id, drugs, start_date, start_date_precision
            ORDER BY TRY_CAST(line_key AS BIGINT) NULLS LAST, line_key) AS nth
        FROM (
            SELECT source_line.* REPLACE (coalesce(named_line.drugs, source_line.drugs) AS drugs)
            FROM source_line
            LEFT JOIN named_line USING (source_id, patient_id, line_key)
        )
    )
),

partial_line AS (
    -- A line started only in a month or year (stored as its period's first day).
    SELECT *
    FROM drug_line
    WHERE start_date IS NOT NULL AND precision_rank(start_date_precision) > 0
),

day_start AS (
    -- The starts dated to the day, each with the sources that give it: what a line given to the month can be.
    SELECT patient_id, drugs, start_date, start_date_precision, list(DISTINCT source_id) AS source_ids
    FROM drug_line
    WHERE start_date IS NOT NULL AND precision_rank(start_date_precision) = 0
    GROUP BY ALL
),

month_target AS (
    -- The start each line given to a month takes: of the same drugs, dated to the day within the month by another
    -- source and by none of its own (a start it gives is a line it numbers apart from them), its k-th line of the
    -- month (by line number) the k-th start in the order they came (came_first).
    SELECT period.source_id, period.patient_id, period.line_key, start.start_date, start.start_date_precision,
           1 AS start_nth
    FROM partial_line AS period
    JOIN day_start AS start
        ON start.patient_id = period.patient_id
       AND start.drugs = period.drugs
       AND start.start_date BETWEEN period.start_date AND period_end(period.start_date, 'month')
       AND NOT list_contains(start.source_ids, period.source_id)
    WHERE precision_rank(period.start_date_precision) = 1
    QUALIFY period.nth = row_number() OVER (
        PARTITION BY period.source_id, period.patient_id, period.line_key
        ORDER BY came_first(start.start_date, start.start_date_precision))
),

month_dated AS (
    -- Each line with its start once the lines given to the month are matched: "March 2022" beside 10 March 2022 one
    -- line dated 10 March.
    SELECT drug_line.* REPLACE (coalesce(month_target.start_date, drug_line.start_date) AS start_date,
                                coalesce(month_target.start_date_precision, drug_line.start_date_precision)
                                    AS start_date_precision,
                                coalesce(month_target.start_nth, drug_line.start_nth) AS start_nth)
    FROM drug_line
    LEFT JOIN month_target USING (source_id, patient_id, line_key)
),

month_start AS (
    -- The starts dated to the day or month once those lines are matched, each with the sources that give it (a line
    -- given to the month and matched, the source of the day too): what a line given to the year can be.
    SELECT patient_id, drugs, start_date, start_date_precision, start_nth, list(DISTINCT source_id) AS source_ids
    FROM month_dated
    WHERE start_date IS NOT NULL AND precision_rank(start_date_precision) IN (0, 1)
    GROUP BY ALL
),

year_target AS (
    -- The start each line given to a year takes, as month_target: "2022" beside "March 2022" of a second source and
    -- 14 March 2022 of a third is their line (the month matched first); a start of a line of its own source, matched
    -- or not, is not another of its lines.
    SELECT period.source_id, period.patient_id, period.line_key, start.start_date, start.start_date_precision,
           start.start_nth
    FROM partial_line AS period
    JOIN month_start AS start
        ON start.patient_id = period.patient_id
       AND start.drugs = period.drugs
       AND start.start_date BETWEEN period.start_date AND period_end(period.start_date, 'year')
       AND NOT list_contains(start.source_ids, period.source_id)
    WHERE precision_rank(period.start_date_precision) = 2
    QUALIFY period.nth = row_number() OVER (
        PARTITION BY period.source_id, period.patient_id, period.line_key
        ORDER BY came_first(start.start_date, start.start_date_precision), start.start_nth)
),

matched_line AS (
    -- Each line with its start once the lines given to the year are matched too.
    SELECT month_dated.* REPLACE (coalesce(year_target.start_date, month_dated.start_date) AS start_date,
                                  coalesce(year_target.start_date_precision, month_dated.start_date_precision)
                                      AS start_date_precision,
                                  coalesce(year_target.start_nth, month_dated.start_nth) AS start_nth)
    FROM month_dated
    LEFT JOIN year_target USING (source_id, patient_id, line_key)
),

keyed_line AS (
    -- The key of the person's line each line is: its start, with its precision when left to the month or year (a line
    -- "March 2022" no start matched is not the line of 1 March, stored alike) and, after the first, which start so
    -- given it is (a source's second line "March 2022" is another's second), or for a start unknown its own.
    SELECT *, coalesce(CAST(start_date AS VARCHAR)
                           || CASE WHEN precision_rank(start_date_precision) > 0
                                   THEN '|' || start_date_precision
                                        || CASE WHEN start_nth > 1 THEN '|' || start_nth ELSE '' END
                                   ELSE '' END,
                       source_id || '|' || line_key) AS match_key
    FROM matched_line
),

person_line AS (
    -- The same line from several sources: one line of the person, with the most precise of its dates.
    SELECT
        patient_id,
        drugs,
        start_date,
        arg_min(start_date_precision, precision_rank(start_date_precision)) AS start_date_precision,
        md5(patient_id || '|' || array_to_string(drugs, '+') || '|' || match_key) AS line_id,
        count(DISTINCT source_id) AS n_sources,
        list_sort(flatten(list(treatment_ids))) AS treatment_ids
    FROM keyed_line
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
           -- not surely before the recommendation: a line "in March 2022" answers one of 15 March 2022
           AND NOT surely_before(person_line.start_date, person_line.start_date_precision,
                                 submission.recommendation_date)
           AND (submission.advice_group = 'not_followed' OR list_has_any(person_line.drugs, submission.agents))
        QUALIFY row_number() OVER (
            PARTITION BY submission.patient_id, submission.recommendation_date
            ORDER BY came_first(person_line.start_date, person_line.start_date_precision), person_line.line_id) = 1
    )
    QUALIFY row_number() OVER (PARTITION BY line_id ORDER BY recommendation_date) = 1
)

SELECT
    person_line.line_id,
    person_line.patient_id,
    CASE WHEN len(person_line.drugs) = 0 THEN 'unknown' ELSE array_to_string(person_line.drugs, ' + ') END
        AS regimen,
    person_line.start_date,
    person_line.start_date_precision,
    person_line.n_sources,
    coalesce(endpoint_line.advice_group, 'not_compared') AS advice_group,
    endpoint_line.recommendation_date,
    person_line.treatment_ids
FROM person_line
LEFT JOIN endpoint_line USING (line_id)
ORDER BY person_line.patient_id, person_line.start_date, line_id;

COMMENT ON TABLE marts.treatment_line IS 'One row per treatment line of a person, assessed or not: each line counted once whichever sources report it, with the board submission it answers. The lines of marts.response_line and of n_treated in marts.board_response.';
COMMENT ON COLUMN marts.treatment_line.line_id IS 'Identifier of the person''s line: a hash of patient, drugs and start date, with its precision when only its month or year is known (and which of a source''s lines so started, after the first; source and line number when the start is unknown).';
COMMENT ON COLUMN marts.treatment_line.patient_id IS 'Pseudonymous patient identifier.';
COMMENT ON COLUMN marts.treatment_line.regimen IS 'Drugs of the treatment line, INN sorted and joined by + ; unknown when none of its treatments names its drug.';
COMMENT ON COLUMN marts.treatment_line.start_date IS 'Start of the line: the earliest start of its treatments, the first day of its period when known only to the month or year (start_date_precision); of a line several sources report, the most precise (a start "in March 2022" beside 10 March 2022 is 10 March); NULL when no source gives one.';
COMMENT ON COLUMN marts.treatment_line.start_date_precision IS 'How much of the start date the sources gave (the most precise of them); NULL when no source gives one. Codes: day / month / year.';
COMMENT ON COLUMN marts.treatment_line.n_sources IS 'Sources that report this line (it is counted once). Unit: sources.';
COMMENT ON COLUMN marts.treatment_line.advice_group IS 'The board comparison the line belongs to: the first line after a followed priority-1 targeted advice, the first line after a submission whose advice was not followed (control), or neither. Codes: followed / not_followed / not_compared.';
COMMENT ON COLUMN marts.treatment_line.recommendation_date IS 'Recommendation date of the board submission the line answers (see advice_group); NULL for a line not compared.';
COMMENT ON COLUMN marts.treatment_line.treatment_ids IS 'The treatments of the line, from every source that reports it: treatment_id of core.treatment, sorted.';
