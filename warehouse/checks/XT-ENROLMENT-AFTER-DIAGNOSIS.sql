-- rule_id: XT-ENROLMENT-AFTER-DIAGNOSIS
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0.02
-- table: study_enrolment
-- field: enrolment_date
-- description: The patient is enrolled before the first diagnosis of the tumour the study is about.
-- expected: enrolment on or after the first diagnosis
WITH first_diagnosis AS (
    SELECT source_id, patient_id, min(diagnosis_date) AS diagnosed FROM diagnosis GROUP BY ALL
)
SELECT e.source_id, e.source_record_key, e.enrolment_date AS value
FROM study_enrolment e JOIN first_diagnosis d USING (source_id, patient_id)
WHERE e.enrolment_date < d.diagnosed
