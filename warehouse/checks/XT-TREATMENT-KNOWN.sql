-- rule_id: XT-TREATMENT-KNOWN
-- category: conformance
-- subcategory: verification
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: adverse_event
-- field: treatment_id
-- description: An adverse event points to a treatment line that is not in the same source's data.
-- expected: the treatment form of that line present and valid
SELECT a.source_id, a.source_record_key, NULL AS value
FROM adverse_event a
WHERE a.treatment_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM treatment t WHERE t.treatment_id = a.treatment_id)
