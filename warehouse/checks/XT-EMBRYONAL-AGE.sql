-- rule_id: XT-EMBRYONAL-AGE
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: diagnosis
-- field: age_at_diagnosis_days
-- description: A malignant embryonal tumour (neuroblastoma or ganglioneuroblastoma, nephroblastoma, hepatoblastoma, retinoblastoma; behaviour 3) is first diagnosed on or after the 15th birthday, which is very unusual.
-- expected: the morphology or the diagnosis/birth date confirmed
-- Grain: one row per first diagnosis (a missing event type counts as one). Behaviour 3 only: the
-- benign ends of the same lines (ganglioneuroma 9490/0, mesoblastic nephroma 8960/1, retinocytoma
-- 9510/0) are tumours of older children and adults too.
SELECT source_id, source_record_key, icdo3_morphology || ' at ' || round(age_at_diagnosis_days / 365.25, 1) || ' y' AS value
FROM diagnosis
WHERE coalesce(event_type, 'initial') = 'initial' AND icdo3_behaviour = '3'
  AND completed_years(age_at_diagnosis_days, diagnosis_date) >= 15
  AND (icdo3_morphology IN ('9490', '9500', '8960', '8970') OR icdo3_morphology BETWEEN '9510' AND '9514')
