-- rule_id: XT-CONTACT-NOT-AFTER-EXPORT
-- category: plausibility
-- subcategory: verification
-- level: cross-table
-- severity: error
-- threshold: 0
-- table: follow_up
-- field: contact_date
-- description: The date of last contact is after the day the export was made, so it cannot be true.
-- expected: a contact date on or before the export date
SELECT f.source_id, f.source_record_key, f.contact_date AS value,
       'contact ' || f.contact_date || ' is after the export of ' || s.exported_on AS message
FROM follow_up f
JOIN meta.source_file s USING (source_id, source_file_sha256)
WHERE f.contact_date > s.exported_on
