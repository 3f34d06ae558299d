-- rule_id: XT-EMBRYONAL-AGE
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: diagnosis
-- field: age_at_diagnosis_days
-- description: An embryonal tumour (neuroblastoma, nephroblastoma, hepatoblastoma, retinoblastoma) is diagnosed on or after the 15th birthday, which is very unusual.
-- expected: the morphology or the diagnosis/birth date confirmed
SELECT source_id, source_record_key, icdo3_morphology || ' at ' || round(age_at_diagnosis_days / 365.25, 1) || ' y' AS value
FROM diagnosis
WHERE event_type = 'initial' AND completed_years(age_at_diagnosis_days, diagnosis_date) >= 15
  AND (icdo3_morphology IN ('9490', '9500', '8960', '8970') OR icdo3_morphology BETWEEN '9510' AND '9514')
