-- marts.response_line: one row per person x treatment line x timepoint (cycle1, best) with a
-- response: the unit the response marts count (marts.response, marts.board_response).
--
-- Lines are those of marts.treatment_line: each line of a person once, whichever sources report
-- it (matched by patient, drugs and start date), with the board advice group it answers; its
-- header gives the definitions of a line and of the advice groups.
-- Definitions
--   response: at cycle1, the earliest evaluable assessment of any of the line's treatments, in any
--     source (NE or missing only when none is evaluable); at best (the best overall response), the
--     best of them by response_rank (CR, CRi, MLFS, PR, SD, NR, PD, then NE or missing), of equal
--     ones the earliest; ties by response_id. An assessment dated before the line started (a baseline
--     filed under the line, or a date error) is no response to it: the line's start is its most precise
--     start date (a month or year known only: the period's first day), so only an assessment surely before
--     it is left out; one without a date stays.

CREATE OR REPLACE TABLE marts.response_line AS
WITH line_treatment AS (
    SELECT line_id, start_date, unnest(treatment_ids) AS treatment_id
    FROM marts.treatment_line
),

assessment AS (
    SELECT
        line_treatment.line_id,
        response.timepoint,
        response.response,
        response.assessment_date
    FROM line_treatment
    JOIN core.response_assessment AS response USING (treatment_id)
    WHERE response.timepoint IN ('cycle1', 'best')
      AND coalesce(response.assessment_date >= line_treatment.start_date, true)
    -- Two sources or two drugs of a line may each give a response: the line's best is the best of them,
    -- its cycle-1 one the earliest evaluable (the earliest would let an NE of one source hide a CR or a
    -- PR another reports).
    QUALIFY row_number() OVER (
        PARTITION BY line_treatment.line_id, response.timepoint
        ORDER BY CASE WHEN response.timepoint = 'best' THEN response_rank(response.response)
                      ELSE not_evaluable(response.response)::INTEGER END,
                 response.assessment_date NULLS LAST, response.response_id) = 1
)

SELECT
    line.line_id,
    line.patient_id,
    line.regimen,
    line.start_date,
    line.start_date_precision,
    line.n_sources,
    line.advice_group,
    assessment.timepoint,
    assessment.assessment_date,
    assessment.response,
    assessment.response IN ('CR', 'CRi', 'PR', 'MLFS') AS is_objective_response
FROM assessment
JOIN marts.treatment_line AS line USING (line_id)
ORDER BY line.patient_id, line.start_date, line_id, assessment.timepoint;

COMMENT ON TABLE marts.response_line IS 'One row per person, treatment line and timepoint (cycle 1, best) with a response: the assessed lines of marts.treatment_line, each counted once whichever sources report it, with the board advice group it answers. The unit of marts.response and marts.board_response.';
COMMENT ON COLUMN marts.response_line.line_id IS 'Identifier of the person''s line: a hash of patient, drugs and start date (source and line number when the start is unknown).';
COMMENT ON COLUMN marts.response_line.patient_id IS 'Pseudonymous patient identifier.';
COMMENT ON COLUMN marts.response_line.regimen IS 'Drugs of the treatment line, INN sorted and joined by + ; unknown when none of its treatments names its drug.';
COMMENT ON COLUMN marts.response_line.start_date IS 'Start of the line as marts.treatment_line gives it: the first day of its period when known only to the month or year (start_date_precision); of a line several sources report, the most precise.';
COMMENT ON COLUMN marts.response_line.start_date_precision IS 'How much of the start date the sources gave: a line started "in November 2025" and another on 1 November 2025 of the same drugs are two lines. Codes: day / month / year.';
COMMENT ON COLUMN marts.response_line.n_sources IS 'Sources that report this line (it is counted once). Unit: sources.';
COMMENT ON COLUMN marts.response_line.advice_group IS 'The board comparison the line belongs to: the first line after a followed priority-1 targeted advice, the first line after a submission whose advice was not followed (control), or neither. Codes: followed / not_followed / not_compared.';
COMMENT ON COLUMN marts.response_line.timepoint IS 'When the response was assessed. Codes: cycle1 (after the first cycle) / best (best overall response).';
COMMENT ON COLUMN marts.response_line.assessment_date IS 'Date of the assessment counted: at cycle1 the earliest of the line, at best that of the best response of the line (of equal ones the earliest).';
COMMENT ON COLUMN marts.response_line.response IS 'The response. Codes: CR / PR / SD / PD / NE / CRi / MLFS / NR; NULL when missing.';
COMMENT ON COLUMN marts.response_line.is_objective_response IS 'Complete or partial response: CR, CRi, PR or MLFS.';
