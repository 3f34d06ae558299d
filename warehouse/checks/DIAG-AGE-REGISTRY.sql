-- rule_id: DIAG-AGE-REGISTRY
-- category: plausibility
-- subcategory: validation
-- level: field
-- severity: error
-- threshold: 0
-- table: diagnosis
-- field: age_at_diagnosis_days
-- scope: age_at_diagnosis_days IS NOT NULL AND coalesce(event_type, 'initial') = 'initial'
-- params: min_age_at_diagnosis_years, max_age_at_diagnosis_years
-- description: A registry that registers patients by their age at initial diagnosis (e.g. children diagnosed at 0-18) has a patient outside that range: the birth or diagnosis date is wrong, or the patient is not in scope.
-- expected: an age at initial diagnosis within the source's range (max_age_at_diagnosis_years x 365.25 days at most)
-- Grain: one row per initial diagnosis outside its source's range; relapses may come later in life.
WITH initial_diagnosis AS (
    SELECT d.source_id, d.source_record_key, d.age_at_diagnosis_days AS age_days,
           p.min_age_at_diagnosis_years AS min_years, p.max_age_at_diagnosis_years AS max_years
    FROM diagnosis d
    JOIN source_params p USING (source_id)
    WHERE d.age_at_diagnosis_days IS NOT NULL AND coalesce(d.event_type, 'initial') = 'initial'
)
SELECT source_id, source_record_key, age_days::VARCHAR AS value,
       'age at diagnosis ' || round(age_days / 365.25, 1) || ' years; the source registers from '
       || coalesce(min_years::VARCHAR, '0') || ' to ' || coalesce(max_years::VARCHAR, 'any age')
       || ' years (params min_age_at_diagnosis_years, max_age_at_diagnosis_years)' AS message
FROM initial_diagnosis
WHERE age_days < min_years * 365.25 OR age_days > max_years * 365.25
