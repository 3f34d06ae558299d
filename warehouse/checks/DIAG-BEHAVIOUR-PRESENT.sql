-- rule_id: DIAG-BEHAVIOUR-PRESENT
-- category: completeness
-- subcategory: verification
-- level: field
-- severity: warning
-- threshold: 0
-- table: diagnosis
-- field: icdo3_behaviour
-- description: The tumour's morphology is given without its ICD-O-3 behaviour (neither written in the code, as in 8970/3, nor in a column of its own), so it has no ICCC-3 class and is not counted as malignant (incidence, survival from diagnosis): the behaviour decides both (8260/0 at the thyroid is an adenoma, 8260/3 a carcinoma), and the warehouse does not assume /3.
-- expected: the tumour's behaviour: 0 benign, 1 uncertain, 2 in situ, 3 malignant
-- Grain: one row per diagnosis with a morphology but no behaviour; value: the morphology and site, for the centre.
-- A diagnosis without a morphology is DIAG-MORPHOLOGY-PRESENT's finding.
SELECT source_id, source_record_key, trim(icdo3_morphology || ' ' || coalesce(icdo3_topography, '')) AS value
FROM diagnosis
WHERE icdo3_morphology IS NOT NULL AND icdo3_behaviour IS NULL
