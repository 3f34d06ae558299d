-- rule_id: XT-BIRTH-YEAR-PLAUSIBLE
-- category: plausibility
-- subcategory: verification
-- level: field
-- severity: warning
-- threshold: 0
-- table: patient_source
-- field: birth_year
-- description: The year of birth is in the future or more than 40 years before the export, implausible for a paediatric registry.
-- expected: a birth year within the 40 years before the export
SELECT p.source_id, p.source_record_key, p.birth_year AS value
FROM patient_source p JOIN meta.source_file s USING (source_id, source_file_sha256)
WHERE p.birth_year > year(s.exported_on) OR p.birth_year < year(s.exported_on) - 40
