-- rule_id: XT-EMBRYONAL-AGE
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: diagnosis
-- field: age_at_diagnosis_days
-- description: An embryonal tumour (ICCC-3 neuroblastoma and ganglioneuroblastoma, retinoblastoma, nephroblastoma, hepatoblastoma) is first diagnosed on or after the 15th birthday, which is very unusual.
-- expected: the morphology or the diagnosis/birth date confirmed
-- Grain: one row per first diagnosis (a missing event type counts as one). The tumours are those of
-- the ICCC-3 extended classes 033 (9490, 9500), 035 (9510-9514), 036 (8959, 8960) and 041 (8970,
-- 8975), as harmonise classified them: malignant only, so the benign ends of the same lines
-- (ganglioneuroma 9490/0, mesoblastic nephroma 8960/1, retinocytoma 9510/0), tumours of older
-- children and adults too, are not judged.
SELECT source_id, source_record_key, icdo3_morphology || ' at ' || round(age_at_diagnosis_days / 365.25, 1) || ' y' AS value
FROM diagnosis
WHERE coalesce(event_type, 'initial') = 'initial' AND iccc3_extended IN ('033', '035', '036', '041')
  AND completed_years(age_at_diagnosis_days, diagnosis_date) >= 15
