-- rule_id: XT-TREATMENT-NOT-AFTER-EXPORT
-- category: plausibility
-- subcategory: verification
-- level: cross-table
-- severity: error
-- threshold: 0
-- table: treatment
-- field: start_date
-- description: A treatment starts after the day the export was made, so the date cannot be true.
-- expected: a start date on or before the export date
SELECT t.source_id, t.source_record_key, t.start_date AS value
FROM treatment t
JOIN meta.source_file s USING (source_id, source_file_sha256)
WHERE t.start_date > s.exported_on
