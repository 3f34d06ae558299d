-- rule_id: XT-ADULT-CARCINOMA-AGE
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: diagnosis
-- field: icdo3_morphology
-- description: An adult-type carcinoma (in situ or malignant, of colon, rectum, lung, breast, prostate, pancreas or stomach) is recorded before the 20th birthday, which needs confirmation; neuroendocrine tumours (8240-8249) and solid pseudopapillary neoplasms (8452), childhood tumours of these organs, are not.
-- expected: the site, morphology or age confirmed by the centre
-- Grain: one row per diagnosis. Carcinomas are 8010-8589 with behaviour 2 or 3: the benign adenomas
-- and polyps of the same range (8140/0, 8210/0, 8220/0: juvenile polyposis, FAP) are common in children.
WITH adult_type_carcinoma AS (
    SELECT *
    FROM diagnosis
    WHERE icdo3_morphology BETWEEN '8010' AND '8589' AND icdo3_behaviour IN ('2', '3')
      AND icdo3_morphology NOT BETWEEN '8240' AND '8249'  -- appendiceal and bronchial NET/carcinoid
      AND icdo3_morphology <> '8452'                      -- solid pseudopapillary neoplasm of the pancreas
)
SELECT source_id, source_record_key, icdo3_morphology || ' ' || icdo3_topography AS value
FROM adult_type_carcinoma
WHERE completed_years(age_at_diagnosis_days, diagnosis_date) < 20
  AND (icdo3_topography BETWEEN 'C16' AND 'C16.9' OR icdo3_topography BETWEEN 'C18' AND 'C21.9'
       OR icdo3_topography BETWEEN 'C25' AND 'C25.9' OR icdo3_topography BETWEEN 'C34' AND 'C34.9'
       OR icdo3_topography BETWEEN 'C50' AND 'C50.9' OR icdo3_topography = 'C61.9')
