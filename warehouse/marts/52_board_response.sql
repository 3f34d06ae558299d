-- marts.board_response: one row per advice group (followed, not_followed) x timepoint (cycle1,
-- best): the target board registry's endpoint "objective response after cycle 1 of patients with
-- high-priority events treated according to advice, compared with a control group".
--
-- Population: board submissions whose priority-1 advice is a targeted treatment (trial,
--   off_label, compassionate: the high-priority actionable event), in the two comparable groups of
--   marts.board_advice: followed (the priority-1 advice was followed) and not_followed (no advice
--   of the submission was followed: the control group, patients of the same board only).
-- Unit: each submission's line (marts.treatment_line, its advice_group; marts.response_line when
--   assessed): the first line after the recommendation, with an advised drug when the advice was
--   followed; counted once whichever sources report it.
-- n_submissions counts the group's submissions, n_treated those with such a line, assessed or not
--   (a line answering two submissions counts once, for the earlier), n_assessed those whose line
--   has a response at the timepoint. orr = n_objective_response / n_assessed
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

treated AS (
    SELECT advice_group, count(*) AS n_treated
    FROM marts.treatment_line
    WHERE advice_group IN ('followed', 'not_followed')
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
