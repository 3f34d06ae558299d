-- rule_id: XT-PATIENT-KNOWN
-- category: conformance
-- subcategory: verification
-- level: cross-table
-- severity: warning
-- threshold: 0
-- phase: admitted
-- table: core_reference
-- field: patient_id
-- scope: field = 'patient_id'
-- description: A record (of any table: diagnosis, treatment, follow-up, ...) belongs to a patient whose registration in the same source is missing or held back, so core knows the patient only from this source's other records (no sex, birth year or centre from it).
-- expected: the patient's registration (demographic) form present and valid
--
-- Grain: one row per admitted record whose patient the same source does not register in core.
-- Judged after the quarantine (phase: admitted): core_reference holds the records that reach core
-- and each reference they make, built from the DDL (etl/quality/sql_checks.py); is_known says
-- whether the same source's core.patient_source row of the patient reaches core too.
SELECT
    source_id,
    source_record_key,
    table_name,
    field,
    value,
    table_name || ' record ' || source_record_key || ': patient_id ' || value
        || ' has no registration (patient_source) of ' || source_id || ' in core (missing or held back)' AS message
FROM core_reference
WHERE field = 'patient_id' AND NOT is_known
