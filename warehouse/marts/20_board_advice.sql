-- marts.board_advice: one row per tumour board review (core.tumour_board_review), that is one
-- prioritised advice given on one submission of a patient to a molecular tumour board.
--
-- Definitions (the target board registry's endpoints)
--   enrolment: the patient's first enrolment in the study the board belongs to (study_id =
--     board, e.g. ILTB); a board with no study of its name has no enrolment date.
--   treatment start: the first treatment (any drug, any source) started on or after the
--     recommendation date: the time the board's case took to reach a treatment.
--   advised treatment start: the first treatment with one of the review's recommended agents
--     started on or after the recommendation date.
--   "Started on or after" the recommendation: not surely before it (surely_before of mart_functions.sql), as
--     marts.treatment_line's lines: a start "in March 2022" (stored 1 March) follows a recommendation of 15
--     March 2022; of several, the one that must have come first (came_first).
--   disease: ICCC-3 subgroup of the patient's first diagnosis (marts.patient_summary).
--   advice group, one value per submission (every review of it carries it), the groups of the
--     registry's control-group comparison (marts.board_response, marts.survival origin
--     recommendation). The submission's high-priority event is its priority-1 advice when that
--     advises a targeted treatment (trial / off_label / compassionate: the board matched it to an
--     actionable event); then:
--       followed                 the priority-1 advice was followed;
--       not_followed             no advice of the submission was followed (all known): the control;
--       lower_priority_followed  a lower-ranked option was followed instead (in neither group);
--       not_known                whether the advice was followed is not known yet;
--     no_targeted_advice when the priority-1 advice is standard treatment or none; and not_known
--     too when core holds no priority-1 advice of the submission (its review held back in
--     dq.quarantine, or not sent): what the board advised first is not known.
--   Intervals are whole days between the two dates; NULL when either date is unknown, and from the
--     recommendation to a start known only to its month or year that may precede it (the start's period
--     holds the recommendation, its first day is before it): no negative time for want of a day.
--   recommendation year: NULL when the recommendation date is unknown or cannot be true (before
--     1900 or after the latest export loaded; the XT-DATE-* rules hold such records back unless a
--     source switches them off).

CREATE OR REPLACE TABLE marts.board_advice AS
WITH plausible_period AS (
    SELECT DATE '1900-01-01' AS earliest, coalesce(max(exported_on), current_date) AS latest
    FROM meta.source_file
    WHERE status = 'loaded'
),

board_enrolment AS (
    SELECT patient_id, study_id AS board, min(enrolment_date) AS enrolment_date
    FROM core.study_enrolment
    GROUP BY ALL
),

submission AS (
    -- One board submission: its reviews share patient, board, submission and recommendation dates.
    SELECT
        review_id,
        bool_or(priority_rank = 1) OVER reviews AS has_priority_advice,
        bool_or(priority_rank = 1 AND recommendation_type IN ('trial', 'off_label', 'compassionate'))
            OVER reviews AS has_targeted_advice,
        bool_or(priority_rank = 1 AND advice_followed) OVER reviews AS is_priority_followed,
        bool_or(advice_followed) OVER reviews AS is_any_followed,
        bool_and(advice_followed IS NOT NULL OR recommendation_type = 'none') OVER reviews AS is_follow_known
    FROM core.tumour_board_review
    WINDOW reviews AS (PARTITION BY patient_id, board, submission_date, recommendation_date)
),

next_treatment AS (
    -- Started on or after the recommendation: not surely before it, as marts.treatment_line's lines ("March 2022"
    -- answers 15 March 2022); of several, the one that must have come first (came_first).
    SELECT
        review.review_id,
        arg_min(treatment.start_date, came_first(treatment.start_date, treatment.start_date_precision))
            AS treatment_start_date,
        arg_min(treatment.start_date, came_first(treatment.start_date, treatment.start_date_precision)) FILTER (
            WHERE list_contains(string_split(review.recommended_agents, '|'), treatment.drug_name)
        ) AS advised_treatment_start_date
    FROM core.tumour_board_review AS review
    JOIN core.treatment AS treatment
        ON treatment.patient_id = review.patient_id
       AND NOT surely_before(treatment.start_date, treatment.start_date_precision, review.recommendation_date)
    GROUP BY review.review_id
)

SELECT
    review.review_id,
    review.patient_id,
    review.board,
    review.source_id,
    coalesce(patient.iccc3_subgroup, 'unknown') AS iccc3_subgroup,
    board_enrolment.enrolment_date,
    review.submission_date,
    review.recommendation_date,
    review.recommendation_date_precision,
    CASE WHEN review.recommendation_date BETWEEN period.earliest AND period.latest
         THEN year(review.recommendation_date) END AS recommendation_year,
    review.priority_rank,
    review.recommendation_type,
    review.recommended_agents,
    review.treatment_intent,
    review.advice_followed,
    review.reason_not_followed,
    CASE WHEN NOT submission.has_priority_advice THEN 'not_known'
         WHEN NOT submission.has_targeted_advice THEN 'no_targeted_advice'
         WHEN submission.is_priority_followed THEN 'followed'
         WHEN submission.is_any_followed THEN 'lower_priority_followed'
         WHEN submission.is_follow_known THEN 'not_followed'
         ELSE 'not_known' END AS advice_group,
    next_treatment.treatment_start_date,
    next_treatment.advised_treatment_start_date,
    review.submission_date - board_enrolment.enrolment_date AS days_enrolment_to_submission,
    review.recommendation_date - review.submission_date AS days_submission_to_recommendation,
    review.recommendation_date - board_enrolment.enrolment_date AS days_enrolment_to_recommendation,
    -- a start known only to its month or year that may precede the recommendation (its first day does): no time
    -- rather than a negative one for want of a day
    CASE WHEN next_treatment.treatment_start_date >= review.recommendation_date
         THEN next_treatment.treatment_start_date - review.recommendation_date END AS days_recommendation_to_treatment,
    CASE WHEN next_treatment.advised_treatment_start_date >= review.recommendation_date
         THEN next_treatment.advised_treatment_start_date - review.recommendation_date END
        AS days_recommendation_to_advised_treatment,
    next_treatment.treatment_start_date - board_enrolment.enrolment_date AS days_enrolment_to_treatment
FROM core.tumour_board_review AS review
CROSS JOIN plausible_period AS period
LEFT JOIN marts.patient_summary AS patient USING (patient_id)
LEFT JOIN board_enrolment USING (patient_id, board)
LEFT JOIN next_treatment USING (review_id)
JOIN submission USING (review_id)
ORDER BY review.patient_id, review.submission_date, review.priority_rank, review.review_id;

COMMENT ON TABLE marts.board_advice IS 'One row per tumour board review (one prioritised advice on one submission): the dates and intervals enrolment -> recommendation -> treatment start, and whether the advice was followed and why not.';
COMMENT ON COLUMN marts.board_advice.review_id IS 'Identifier of the review, the key of core.tumour_board_review.';
COMMENT ON COLUMN marts.board_advice.patient_id IS 'Pseudonymous patient identifier.';
COMMENT ON COLUMN marts.board_advice.board IS 'The molecular tumour board. Codes: ILTB.';
COMMENT ON COLUMN marts.board_advice.source_id IS 'Source the review was exported from.';
COMMENT ON COLUMN marts.board_advice.iccc3_subgroup IS 'The patient''s disease: ICCC-3 subgroup of the first diagnosis; unknown when none is recorded. Codes: ICCC-3 subgroup.';
COMMENT ON COLUMN marts.board_advice.enrolment_date IS 'The patient''s first enrolment in the board''s study (study_id = board).';
COMMENT ON COLUMN marts.board_advice.submission_date IS 'Date the case was submitted to the board.';
COMMENT ON COLUMN marts.board_advice.recommendation_date IS 'Date the board gave its recommendation; one a source gives only to the month or year is the first day of its period (recommendation_date_precision).';
COMMENT ON COLUMN marts.board_advice.recommendation_date_precision IS 'How much of the recommendation date the source gave. Codes: day / month / year.';
COMMENT ON COLUMN marts.board_advice.recommendation_year IS 'Calendar year of the recommendation. Unit: year.';
COMMENT ON COLUMN marts.board_advice.priority_rank IS 'Priority of this advice among the options the board gave on the submission, 1 = first choice.';
COMMENT ON COLUMN marts.board_advice.recommendation_type IS 'Kind of treatment advised. Codes: trial / off_label / compassionate / standard / none.';
COMMENT ON COLUMN marts.board_advice.recommended_agents IS 'Advised drugs, INN in lower case, separated by |.';
COMMENT ON COLUMN marts.board_advice.treatment_intent IS 'Intent of the advised treatment. Codes: bridging / palliative / curative.';
COMMENT ON COLUMN marts.board_advice.advice_followed IS 'This advice was followed; NULL when not yet known.';
COMMENT ON COLUMN marts.board_advice.reason_not_followed IS 'Why the advice was not followed, as the centre wrote it.';
COMMENT ON COLUMN marts.board_advice.advice_group IS 'What became of the submission''s advice (the same on every review of a submission): followed (its priority-1 targeted advice was), not_followed (no advice of it was; the control group), lower_priority_followed, not_known (whether it was followed, or the priority-1 advice itself, is not known), or no_targeted_advice (the priority-1 advice is standard treatment or none). Codes: followed / not_followed / lower_priority_followed / not_known / no_targeted_advice.';
COMMENT ON COLUMN marts.board_advice.treatment_start_date IS 'Start of the first treatment (any drug, any source) on or after the recommendation date: one known only to its month or year is, unless surely before it, and is the first day of its period; of several, the one that must have come first.';
COMMENT ON COLUMN marts.board_advice.advised_treatment_start_date IS 'Start of the first treatment with one of the recommended agents on or after the recommendation date (as treatment_start_date).';
COMMENT ON COLUMN marts.board_advice.days_enrolment_to_submission IS 'Days from enrolment to submission to the board. Unit: days.';
COMMENT ON COLUMN marts.board_advice.days_submission_to_recommendation IS 'Days from submission to recommendation. Unit: days.';
COMMENT ON COLUMN marts.board_advice.days_enrolment_to_recommendation IS 'Days from enrolment to recommendation. Unit: days.';
COMMENT ON COLUMN marts.board_advice.days_recommendation_to_treatment IS 'Days from recommendation to the start of the next treatment; NULL when that start, known only to its month or year, may precede the recommendation (its first day does). Unit: days.';
COMMENT ON COLUMN marts.board_advice.days_recommendation_to_advised_treatment IS 'Days from recommendation to the start of an advised drug; NULL when that start, known only to its month or year, may precede the recommendation (its first day does). Unit: days.';
COMMENT ON COLUMN marts.board_advice.days_enrolment_to_treatment IS 'Days from enrolment to the start of the next treatment after the recommendation. Unit: days.';
