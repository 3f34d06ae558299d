-- rule_id: XT-RETINOBLASTOMA-AGE
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: diagnosis
-- field: age_at_diagnosis_days
-- description: A retinoblastoma (ICCC-3 group V: 9510-9514, malignant) is first diagnosed after the age of 5 (on or after the 6th birthday), which is very unusual (IARC/ENCR age-morphology check).
-- expected: the morphology or the diagnosis/birth date confirmed
-- Grain: one row per first diagnosis (a missing event type counts as one): a relapse is dated when it
-- happens, years after the diagnosis. ICCC-3 group V (recode 050) as harmonise classified it holds
-- behaviour 3 only: a retinocytoma (9510/0) is found at any age.
SELECT source_id, source_record_key, icdo3_morphology || ' at ' || round(age_at_diagnosis_days / 365.25, 1) || ' y' AS value
FROM diagnosis
WHERE coalesce(event_type, 'initial') = 'initial' AND iccc3_code = '050'
  AND completed_years(age_at_diagnosis_days, diagnosis_date) > 5
