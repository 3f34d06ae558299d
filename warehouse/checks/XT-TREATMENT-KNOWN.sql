-- rule_id: XT-TREATMENT-KNOWN
-- category: conformance
-- subcategory: verification
-- level: cross-table
-- severity: warning
-- threshold: 0
-- phase: admitted
-- table: core_reference
-- field: treatment_id
-- scope: field <> 'patient_id'
-- description: A response assessment or adverse event (or any record referring to another record) points to a treatment line that is not in core (missing from the export, or held back), so the response and safety marts cannot attribute it to a drug.
-- expected: the treatment form of that line present and valid
--
-- Grain: one row per admitted record x reference to a record (other than the patient) that does
-- not reach core. Judged after the quarantine (phase: admitted) over core_reference, built from the
-- DDL (etl/quality/sql_checks.py): every column named after another core table's key, today
-- treatment_id of response_assessment and adverse_event.
SELECT
    source_id,
    source_record_key,
    table_name,
    field,
    value,
    table_name || ' record ' || source_record_key || ': ' || field || ' ' || value || ' is not in core.'
        || target_table || ' (missing or held back)' AS message
FROM core_reference
WHERE field <> 'patient_id' AND NOT is_known
