-- rule_id: XT-BIRTH-YEAR-PLAUSIBLE
-- category: plausibility
-- subcategory: verification
-- level: field
-- severity: warning
-- threshold: 0
-- table: patient_source
-- field: birth_year
-- description: The year of birth is more than 40 years before the export, implausible for a paediatric registry.
-- expected: a birth year within the 40 years before the export
--
-- A year of birth after the export year or before 1900 cannot be true at all: those are errors of
-- XT-DATE-NOT-AFTER-EXPORT and XT-DATE-NOT-BEFORE-1900, so this warning leaves them out.
-- The export is the one the registration is in now (stage.record): an unchanged patient's rows are carried
-- over from the export that first delivered them and keep it as their lineage (etl/transform/carry_over.py),
-- so a year of birth carried into a new year is judged by the new year's export, as a fresh load judges it.
WITH export_now AS (
    SELECT DISTINCT source_id, source_record_key, source_file_sha256 FROM record
)

SELECT p.source_id, p.source_record_key, p.birth_year AS value
FROM patient_source p
JOIN export_now n USING (source_id, source_record_key)
JOIN meta.source_file s ON s.source_id = n.source_id AND s.source_file_sha256 = n.source_file_sha256
WHERE p.birth_year < year(s.exported_on) - 40 AND p.birth_year >= 1900
