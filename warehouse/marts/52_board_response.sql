-- marts.board_response: one row per advice group (followed, not_followed) x timepoint (cycle1,
-- best): the target board registry's endpoint "objective response after cycle 1 of patients with
-- high-priority events treated according to advice, compared with a control group".
--
-- Population: board submissions whose priority-1 advice is a targeted treatment (trial,
--   off_label, compassionate: the high-priority actionable event), in the two comparable groups of
--   marts.board_advice: followed (the priority-1 advice was followed) and not_followed (no advice
--   of the submission was followed: the control group, patients of the same board only).
-- Unit: each submission's line (marts.response_line): the first line after the recommendation,
--   with an advised drug when the advice was followed; counted once whichever sources report it.
-- n_submissions counts the group's submissions, n_treated those with such a line (assessed or
--   not: restated from core.treatment, as marts.response_line holds assessed lines only; a line
--   answering two submissions counts once, for the earlier), n_assessed those whose line has a
--   response at the timepoint. orr = n_objective_response / n_assessed
--   (NE or missing counted as non-response), with the Wilson score 95% interval.

CREATE OR REPLACE TABLE marts.board_response AS
WITH comparison AS (
    SELECT * FROM (VALUES ('followed'), ('not_followed')) AS groups (advice_group)
    CROSS JOIN (VALUES ('cycle1'), ('best')) AS timepoints (timepoint)
),

submission AS (
    SELECT advice_group, count(DISTINCT (patient_id, board, submission_date, recommendation_date)) AS n_submissions
    FROM marts.board_advice
    WHERE priority_rank = 1 AND advice_group IN ('followed', 'not_followed') AND recommendation_date IS NOT NULL
    GROUP BY advice_group
),

person_line AS (
    -- The person's lines as marts.response_line matches them across sources, assessed or not:
    -- response_line holds assessed lines only. A line answering a submission starts on or after
    -- its recommendation, so its start is known and the line is one per patient, drugs and start.
    SELECT
        patient_id,
        drugs,
        start_date,
        md5(patient_id || '|' || array_to_string(drugs, '+') || '|' || CAST(start_date AS VARCHAR)) AS line_id
    FROM (
        SELECT
            patient_id,
            list_sort(list(DISTINCT drug_name) FILTER (WHERE drug_name IS NOT NULL)) AS drugs,
            min(start_date) AS start_date
        FROM core.treatment
        GROUP BY source_id, patient_id, coalesce(CAST(line_number AS VARCHAR), treatment_id)
    )
    WHERE start_date IS NOT NULL
    GROUP BY ALL
),

submission_line AS (
    -- Each submission's line, as marts.response_line gives it; a line answering two goes to the earlier.
    SELECT advice_group, line_id
    FROM (
        SELECT comparable.*, person_line.line_id
        FROM (
            SELECT DISTINCT patient_id, recommendation_date, advice_group,
                   string_split(recommended_agents, '|') AS agents
            FROM marts.board_advice
            WHERE priority_rank = 1 AND advice_group IN ('followed', 'not_followed') AND recommendation_date IS NOT NULL
        ) AS comparable
        JOIN person_line
            ON person_line.patient_id = comparable.patient_id
           AND person_line.start_date >= comparable.recommendation_date
           AND (comparable.advice_group = 'not_followed' OR list_has_any(person_line.drugs, comparable.agents))
        QUALIFY row_number() OVER (
            PARTITION BY comparable.patient_id, comparable.recommendation_date
            ORDER BY person_line.start_date, person_line.line_id) = 1
    )
    QUALIFY row_number() OVER (PARTITION BY line_id ORDER BY recommendation_date) = 1
),

treated AS (
    SELECT advice_group, count(*) AS n_treated
    FROM submission_line
    GROUP BY advice_group
),

counted AS (
    SELECT
        advice_group,
        timepoint,
        count(*) AS n_assessed,
        count(*) FILTER (WHERE is_objective_response) AS n_objective_response
    FROM marts.response_line
    WHERE advice_group IN ('followed', 'not_followed')
    GROUP BY ALL
),

rated AS (
    SELECT
        comparison.advice_group,
        comparison.timepoint,
        coalesce(submission.n_submissions, 0) AS n_submissions,
        coalesce(treated.n_treated, 0) AS n_treated,
        coalesce(counted.n_assessed, 0) AS n_assessed,
        coalesce(counted.n_objective_response, 0) AS n_objective_response,
        counted.n_objective_response / counted.n_assessed AS orr
    FROM comparison
    LEFT JOIN submission USING (advice_group)
    LEFT JOIN treated USING (advice_group)
    LEFT JOIN counted USING (advice_group, timepoint)
)

SELECT
    advice_group,
    timepoint,
    n_submissions,
    n_treated,
    n_assessed,
    n_objective_response,
    orr,
    wilson_lower(orr, n_assessed) AS orr_ci_lower,
    wilson_upper(orr, n_assessed) AS orr_ci_upper
FROM rated
ORDER BY advice_group, timepoint;

COMMENT ON TABLE marts.board_response IS 'The target board registry''s response endpoint: objective response after cycle 1 (and best response) of board patients whose priority-1 targeted advice was followed, against the board''s own patients whose advice was not followed (control). One line per submission, counted once across sources (docs/endpoints.md).';
COMMENT ON COLUMN marts.board_response.advice_group IS 'Followed: the priority-1 targeted advice was followed; not_followed: no advice of the submission was (the control group). Codes: followed / not_followed.';
COMMENT ON COLUMN marts.board_response.timepoint IS 'When the response was assessed. Codes: cycle1 (after the first cycle) / best (best overall response).';
COMMENT ON COLUMN marts.board_response.n_submissions IS 'Board submissions in the group. Unit: submissions.';
COMMENT ON COLUMN marts.board_response.n_treated IS 'Submissions followed by a treatment line (with an advised drug when the advice was followed), assessed or not. Unit: treatment lines.';
COMMENT ON COLUMN marts.board_response.n_assessed IS 'Those lines with a response at this timepoint. Unit: treatment lines.';
COMMENT ON COLUMN marts.board_response.n_objective_response IS 'Objective responses among them: CR, CRi, PR or MLFS. Unit: treatment lines.';
COMMENT ON COLUMN marts.board_response.orr IS 'Objective response rate, n_objective_response / n_assessed; NULL when none was assessed. Unit: proportion (0-1).';
COMMENT ON COLUMN marts.board_response.orr_ci_lower IS 'Lower bound of the Wilson score 95% confidence interval of orr. Unit: proportion (0-1).';
COMMENT ON COLUMN marts.board_response.orr_ci_upper IS 'Upper bound of the Wilson score 95% confidence interval of orr. Unit: proportion (0-1).';
