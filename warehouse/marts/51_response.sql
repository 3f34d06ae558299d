-- marts.response: one row per regimen x advice group x timepoint (cycle1, best).
--
-- Unit: an assessed treatment line of a person (marts.response_line): a line reported by several
-- sources counted once, with its earliest assessment after cycle 1 and its best overall response.
-- Definitions
--   regimen: the drugs of the line, sorted and joined by ' + ' (unknown when no treatment of the
--     line names its drug); sources record a line's response against its first drug, so a
--     combination is one regimen, not one row per drug.
--   advice group (marts.response_line): followed / not_followed (the target board registry's
--     control group) / not_compared. The headline comparison, all regimens together, is
--     marts.board_response.
--   response classes: complete CR, CRi; partial PR, MLFS (leukaemia: morphologic leukaemia-free
--     state); stable SD; progression PD; no response NR; not evaluable NE or missing.
--   objective response = complete + partial; orr = n_objective_response / n_assessed, not
--     evaluable counted as non-response; orr_ci_* the Wilson score 95% interval.

CREATE OR REPLACE TABLE marts.response AS
WITH counted AS (
    SELECT
        regimen,
        advice_group,
        timepoint,
        count(*) AS n_assessed,
        count(*) FILTER (WHERE response IN ('CR', 'CRi')) AS n_complete,
        count(*) FILTER (WHERE response IN ('PR', 'MLFS')) AS n_partial,
        count(*) FILTER (WHERE response = 'SD') AS n_stable,
        count(*) FILTER (WHERE response = 'PD') AS n_progression,
        count(*) FILTER (WHERE response = 'NR') AS n_no_response,
        count(*) FILTER (WHERE response IS NULL OR response NOT IN ('CR', 'CRi', 'PR', 'MLFS', 'SD', 'PD', 'NR'))
            AS n_not_evaluable
    FROM marts.response_line
    GROUP BY ALL
),

rated AS (
    SELECT
        *,
        n_complete + n_partial AS n_objective_response,
        (n_complete + n_partial) / n_assessed AS orr
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
    wilson_lower(orr, n_assessed) AS orr_ci_lower,
    wilson_upper(orr, n_assessed) AS orr_ci_upper
FROM rated
ORDER BY regimen, advice_group, timepoint;

COMMENT ON TABLE marts.response IS 'Objective response after cycle 1 and best overall response per regimen, by whether the treatment followed the board''s advice (the registry''s control-group comparison). Each person''s line counted once across sources. Assessments against a treatment not in core, or against none, are not counted (how many: marts.left_out).';
COMMENT ON COLUMN marts.response.regimen IS 'Drugs of the treatment line, INN sorted and joined by + ; unknown when none of its treatments names its drug.';
COMMENT ON COLUMN marts.response.advice_group IS 'The board comparison the line belongs to (marts.response_line): the first line after a followed priority-1 targeted advice, the first line after advice not followed (control), or neither. Codes: followed / not_followed / not_compared.';
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
