-- rule_id: XT-PATIENT-HAS-FOLLOW-UP
-- category: completeness
-- subcategory: verification
-- level: table
-- severity: warning
-- threshold: 0.2
-- table: patient_source
-- description: Share of patients with no follow-up (vital status, last contact) recorded in their source.
-- expected: at least one follow-up form per patient
SELECT p.source_id, p.source_record_key, NULL AS value, 'no follow-up' AS message
FROM patient_source p
WHERE NOT EXISTS (SELECT 1 FROM follow_up f WHERE f.source_id = p.source_id AND f.patient_id = p.patient_id)
