-- rule_id: XT-SEX-SITE
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: diagnosis
-- field: icdo3_topography
-- description: The tumour site is a sex-specific organ of the other sex (e.g. a male with C51-C58, a female with C60-C63).
-- expected: a site compatible with the patient's sex, or the sex corrected
SELECT d.source_id, d.source_record_key, d.icdo3_topography AS value,
       p.sex || ' patient with site ' || d.icdo3_topography AS message
FROM diagnosis d JOIN patient_source p USING (source_id, patient_id)
WHERE (p.sex = 'male' AND d.icdo3_topography BETWEEN 'C51' AND 'C58.9')
   OR (p.sex = 'female' AND d.icdo3_topography BETWEEN 'C60' AND 'C63.9')
