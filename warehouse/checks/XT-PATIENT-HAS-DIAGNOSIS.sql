-- rule_id: XT-PATIENT-HAS-DIAGNOSIS
-- category: completeness
-- subcategory: verification
-- level: table
-- severity: warning
-- threshold: 0.05
-- table: patient_source
-- description: Share of patients with no diagnosis recorded in their source.
-- expected: a diagnosis form for every patient
SELECT p.source_id, p.source_record_key, NULL AS value, 'no diagnosis' AS message
FROM patient_source p
WHERE NOT EXISTS (SELECT 1 FROM diagnosis d WHERE d.source_id = p.source_id AND d.patient_id = p.patient_id)
