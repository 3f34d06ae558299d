-- rule_id: XT-BASIS-VS-MORPHOLOGY
-- category: plausibility
-- subcategory: validation
-- level: record
-- severity: warning
-- threshold: 0.05
-- table: diagnosis
-- field: basis_of_diagnosis
-- description: A specific histology is recorded although the basis of diagnosis is clinical only or a death certificate (ENCR check); a retinoblastoma diagnosed clinically or on imaging, and a glioma of the brain stem or optic pathway diagnosed on imaging, are the standard of care and not flagged.
-- expected: basis of diagnosis 5-7 (cytology / histology) for a specific morphology, or morphology 8000/8001
-- Grain: one row per diagnosis. Basis 0 death certificate, 1 clinical, 2 clinical investigation (imaging).
-- Paediatric practice diagnoses some tumours without tissue: a retinoblastoma is not biopsied (the
-- needle seeds it out of the eye), a diffuse intrinsic pontine or optic pathway glioma is diagnosed on MRI.
WITH specific_without_microscopy AS (
    SELECT *,
           coalesce((basis_of_diagnosis IN ('1', '2') AND icdo3_morphology BETWEEN '9510' AND '9514')
                    OR (basis_of_diagnosis = '2' AND icdo3_morphology IN ('9380', '9385')
                        AND icdo3_topography IN ('C71.7', 'C72.3')), false) AS is_usual_without_tissue
    FROM diagnosis
    WHERE basis_of_diagnosis IN ('0', '1', '2') AND icdo3_morphology NOT IN ('8000', '8001')
)
SELECT source_id, source_record_key, basis_of_diagnosis || ' with ' || icdo3_morphology AS value
FROM specific_without_microscopy
WHERE NOT is_usual_without_tissue
