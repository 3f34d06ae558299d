-- marts.response: one row per regimen x advice group x timepoint (cycle1, best).
--
-- Unit: an assessed treatment line, one response per treatment and timepoint (the earliest
-- assessment if a treatment has several; ties by response_id).
-- Definitions
--   regimen: the drugs of the treatment line the response is recorded against (same source,
--     patient and line number), sorted and joined by ' + '; sources record a line's response
--     against its first drug, so a combination is one regimen, not one row per drug.
--   advice group, the control-group comparison of the target board registry:
--     followed        the line started on or after a board recommendation whose advice was
--                     followed and which advised one of the line's drugs;
--     not_followed    the line started after a board review but is not such a followed advice
--                     (advice not followed, not yet known, or no treatment advised);
--     no_board_review the patient had no board recommendation before the line started.
--   response classes: complete CR, CRi; partial PR, MLFS (leukaemia: morphologic leukaemia-free
--     state); stable SD; progression PD; no response NR; not evaluable NE or missing.
--   objective response = complete + partial; orr = n_objective_response / n_assessed, not
--     evaluable counted as non-response; orr_ci_* the Wilson score 95% interval.

CREATE OR REPLACE TABLE marts.response AS
WITH line AS (
    SELECT
        source_id,
        patient_id,
        coalesce(CAST(line_number AS VARCHAR), treatment_id) AS line_key,
        list_sort(list(DISTINCT drug_name) FILTER (WHERE drug_name IS NOT NULL)) AS drugs
    FROM core.treatment
    GROUP BY ALL
),

treatment AS (
    SELECT treatment.treatment_id, treatment.patient_id, treatment.start_date, line.drugs
    FROM core.treatment AS treatment
    JOIN line
        ON line.source_id = treatment.source_id
       AND line.patient_id = treatment.patient_id
       AND line.line_key = coalesce(CAST(treatment.line_number AS VARCHAR), treatment.treatment_id)
),

advice AS (
    SELECT
        treatment.treatment_id,
        CASE WHEN bool_or(review.advice_followed
                          AND list_has_any(string_split(review.recommended_agents, '|'), treatment.drugs))
                 THEN 'followed'
             WHEN count(review.review_id) > 0 THEN 'not_followed'
             ELSE 'no_board_review' END AS advice_group
    FROM treatment
    LEFT JOIN core.tumour_board_review AS review
        ON review.patient_id = treatment.patient_id
       AND review.recommendation_date <= treatment.start_date
    GROUP BY treatment.treatment_id
),

assessment AS (
    SELECT treatment_id, timepoint, response
    FROM core.response_assessment
    WHERE timepoint IN ('cycle1', 'best')
    QUALIFY row_number() OVER (PARTITION BY treatment_id, timepoint ORDER BY assessment_date NULLS LAST, response_id) = 1
),

counted AS (
    SELECT
        array_to_string(treatment.drugs, ' + ') AS regimen,
        advice.advice_group,
        assessment.timepoint,
        count(*) AS n_assessed,
        count(*) FILTER (WHERE response IN ('CR', 'CRi')) AS n_complete,
        count(*) FILTER (WHERE response IN ('PR', 'MLFS')) AS n_partial,
        count(*) FILTER (WHERE response = 'SD') AS n_stable,
        count(*) FILTER (WHERE response = 'PD') AS n_progression,
        count(*) FILTER (WHERE response = 'NR') AS n_no_response,
        count(*) FILTER (WHERE response IS NULL OR response NOT IN ('CR', 'CRi', 'PR', 'MLFS', 'SD', 'PD', 'NR'))
            AS n_not_evaluable
    FROM assessment
    JOIN treatment USING (treatment_id)
    JOIN advice USING (treatment_id)
    GROUP BY ALL
),

rated AS (
    SELECT
        *,
        n_complete + n_partial AS n_objective_response,
        (n_complete + n_partial) / n_assessed AS orr,
        1.959963984540054 AS z
    FROM counted
)

SELECT
    regimen,
    advice_group,
    timepoint,
    n_assessed,
    n_complete,
    n_partial,
    n_stable,
    n_progression,
    n_no_response,
    n_not_evaluable,
    n_objective_response,
    orr,
    (orr + z * z / (2 * n_assessed) - z * sqrt(orr * (1 - orr) / n_assessed + z * z / (4 * n_assessed * n_assessed)))
        / (1 + z * z / n_assessed) AS orr_ci_lower,
    (orr + z * z / (2 * n_assessed) + z * sqrt(orr * (1 - orr) / n_assessed + z * z / (4 * n_assessed * n_assessed)))
        / (1 + z * z / n_assessed) AS orr_ci_upper
FROM rated
ORDER BY regimen, advice_group, timepoint;

COMMENT ON TABLE marts.response IS 'Objective response after cycle 1 and best overall response per regimen, by whether the treatment followed the board''s advice (the registry''s control-group comparison). Assessments against a treatment not in core, or against none, are not counted (how many: marts.left_out).';
COMMENT ON COLUMN marts.response.regimen IS 'Drugs of the treatment line, INN sorted and joined by + .';
COMMENT ON COLUMN marts.response.advice_group IS 'Whether the line was the board''s followed advice. Codes: followed / not_followed / no_board_review.';
COMMENT ON COLUMN marts.response.timepoint IS 'When the response was assessed. Codes: cycle1 (after the first cycle) / best (best overall response).';
COMMENT ON COLUMN marts.response.n_assessed IS 'Treatment lines with a response at this timepoint. Unit: treatment lines.';
COMMENT ON COLUMN marts.response.n_complete IS 'Complete responses: CR or CRi. Unit: treatment lines.';
COMMENT ON COLUMN marts.response.n_partial IS 'Partial responses: PR, or MLFS in leukaemia. Unit: treatment lines.';
COMMENT ON COLUMN marts.response.n_stable IS 'Stable disease, SD. Unit: treatment lines.';
COMMENT ON COLUMN marts.response.n_progression IS 'Progressive disease, PD. Unit: treatment lines.';
COMMENT ON COLUMN marts.response.n_no_response IS 'No response (leukaemia), NR. Unit: treatment lines.';
COMMENT ON COLUMN marts.response.n_not_evaluable IS 'Not evaluable (NE) or response missing. Unit: treatment lines.';
COMMENT ON COLUMN marts.response.n_objective_response IS 'Objective responses, n_complete + n_partial. Unit: treatment lines.';
COMMENT ON COLUMN marts.response.orr IS 'Objective response rate, n_objective_response / n_assessed. Unit: proportion (0-1).';
COMMENT ON COLUMN marts.response.orr_ci_lower IS 'Lower bound of the Wilson score 95% confidence interval of orr. Unit: proportion (0-1).';
COMMENT ON COLUMN marts.response.orr_ci_upper IS 'Upper bound of the Wilson score 95% confidence interval of orr. Unit: proportion (0-1).';
