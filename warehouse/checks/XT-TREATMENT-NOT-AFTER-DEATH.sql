-- rule_id: XT-TREATMENT-NOT-AFTER-DEATH
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: treatment
-- field: start_date
-- description: A treatment starts after the patient's date of death.
-- expected: treatment starts before death
WITH death AS (
    SELECT source_id, patient_id, min(death_date) AS died FROM follow_up WHERE death_date IS NOT NULL GROUP BY ALL
)
SELECT t.source_id, t.source_record_key, t.start_date AS value,
       'starts ' || t.start_date || ', died ' || d.died AS message
FROM treatment t JOIN death d USING (source_id, patient_id)
WHERE t.start_date > d.died
