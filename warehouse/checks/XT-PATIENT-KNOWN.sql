-- rule_id: XT-PATIENT-KNOWN
-- category: conformance
-- subcategory: verification
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: diagnosis
-- field: patient_id
-- description: A diagnosis belongs to a patient the same source does not list (its patient record is missing or held back).
-- expected: the patient's registration form present and valid
SELECT d.source_id, d.source_record_key, NULL AS value
FROM diagnosis d
WHERE NOT EXISTS (SELECT 1 FROM patient_source p WHERE p.source_id = d.source_id AND p.patient_id = d.patient_id)
