-- rule_id: XT-ADULT-CARCINOMA-AGE
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: diagnosis
-- field: icdo3_morphology
-- description: An adult-type carcinoma (of colon, rectum, lung, breast, prostate, pancreas or stomach) is recorded before the 20th birthday, which needs confirmation.
-- expected: the site, morphology or age confirmed by the centre
SELECT source_id, source_record_key, icdo3_morphology || ' ' || icdo3_topography AS value
FROM diagnosis
WHERE icdo3_morphology BETWEEN '8010' AND '8589' AND completed_years(age_at_diagnosis_days, diagnosis_date) < 20
  AND (icdo3_topography BETWEEN 'C16' AND 'C16.9' OR icdo3_topography BETWEEN 'C18' AND 'C21.9'
       OR icdo3_topography BETWEEN 'C25' AND 'C25.9' OR icdo3_topography BETWEEN 'C34' AND 'C34.9'
       OR icdo3_topography BETWEEN 'C50' AND 'C50.9' OR icdo3_topography = 'C61.9')
