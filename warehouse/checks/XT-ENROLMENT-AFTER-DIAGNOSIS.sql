-- rule_id: XT-ENROLMENT-AFTER-DIAGNOSIS
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0.02
-- table: study_enrolment
-- field: enrolment_date
-- description: The patient is enrolled before the first diagnosis of the tumour the study is about, as the same source records it.
-- expected: enrolment on or after the first diagnosis
--
-- Grain: one row per enrolment that surely comes before the first diagnosis: the last day it can be
-- (an enrolment known to the month or year, period_end) is before the first day the first diagnosis
-- can be. An enrolment on the day of diagnosis passes.
WITH first_diagnosis AS (
    SELECT source_id, patient_id, min(diagnosis_date) AS diagnosed FROM diagnosis GROUP BY ALL
)
SELECT e.source_id, e.source_record_key, e.enrolment_date AS value
FROM study_enrolment e JOIN first_diagnosis d USING (source_id, patient_id)
WHERE period_end(e.enrolment_date, e.enrolment_date_precision) < d.diagnosed  -- "May 2019" may be 31 May
