-- rule_id: XT-RETINOBLASTOMA-AGE
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: diagnosis
-- field: age_at_diagnosis_days
-- description: A retinoblastoma (9510-9514) is diagnosed after the age of 5 (on or after the 6th birthday), which is very unusual (IARC/ENCR age-morphology check).
-- expected: the morphology or the diagnosis/birth date confirmed
SELECT source_id, source_record_key, icdo3_morphology || ' at ' || round(age_at_diagnosis_days / 365.25, 1) || ' y' AS value
FROM diagnosis
WHERE icdo3_morphology BETWEEN '9510' AND '9514' AND completed_years(age_at_diagnosis_days, diagnosis_date) > 5
