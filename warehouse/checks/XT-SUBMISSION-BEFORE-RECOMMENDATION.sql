-- rule_id: XT-SUBMISSION-BEFORE-RECOMMENDATION
-- category: plausibility
-- subcategory: verification
-- level: record
-- severity: error
-- threshold: 0
-- table: tumour_board_review
-- field: recommendation_date
-- description: The tumour board's recommendation is dated before the case was submitted to it.
-- expected: submission on or before the recommendation
--
-- Grain: one row per review surely recommended before its submission: the last day the
-- recommendation can be (one known to the month or year, period_end) is before the first day the
-- submission can be. A recommendation on the day of submission passes.
SELECT source_id, source_record_key, recommendation_date AS value,
       'recommended ' || recommendation_date || ', submitted ' || submission_date AS message
FROM tumour_board_review
WHERE period_end(recommendation_date, recommendation_date_precision) < submission_date
