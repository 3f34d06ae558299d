-- rule_id: XT-BASIS-VS-MORPHOLOGY
-- category: plausibility
-- subcategory: validation
-- level: record
-- severity: warning
-- threshold: 0.05
-- table: diagnosis
-- field: basis_of_diagnosis
-- description: A specific histology is recorded although the basis of diagnosis is clinical only or a death certificate (ENCR check).
-- expected: basis of diagnosis 5-7 (cytology / histology) for a specific morphology, or morphology 8000/8001
SELECT source_id, source_record_key, basis_of_diagnosis || ' with ' || icdo3_morphology AS value
FROM diagnosis
WHERE basis_of_diagnosis IN ('0', '1', '2') AND icdo3_morphology NOT IN ('8000', '8001')
