-- rule_id: XT-GRADE5-IMPLIES-DEATH
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: adverse_event
-- field: ctcae_grade
-- description: A grade 5 (fatal) adverse event is recorded but the patient is not reported dead in that source.
-- expected: vital status dead with a date of death, or a lower grade
SELECT a.source_id, a.source_record_key, a.ctcae_grade AS value
FROM adverse_event a
WHERE a.ctcae_grade = 5
  AND NOT EXISTS (SELECT 1 FROM follow_up f WHERE f.source_id = a.source_id AND f.patient_id = a.patient_id
                  AND (f.vital_status = 'dead' OR f.death_date IS NOT NULL))
