-- rule_id: XT-DEATH-AFTER-DIAGNOSIS
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: follow_up
-- field: death_date
-- description: The date of death is before the patient's first diagnosis in that source.
-- expected: death on or after diagnosis
WITH first_diagnosis AS (
    SELECT source_id, patient_id, min(diagnosis_date) AS diagnosed FROM diagnosis GROUP BY ALL
)
SELECT f.source_id, f.source_record_key, f.death_date AS value
FROM follow_up f JOIN first_diagnosis d USING (source_id, patient_id)
WHERE period_end(f.death_date, f.death_date_precision) < d.diagnosed  -- a death in "2019" may be in December
