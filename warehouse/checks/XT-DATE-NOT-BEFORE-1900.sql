-- rule_id: XT-DATE-NOT-BEFORE-1900
-- category: plausibility
-- subcategory: verification
-- level: cross-table
-- severity: error
-- threshold: 0
-- table: recorded_date
-- description: A date (of any table: enrolment, diagnosis, treatment, contact, ...) or a year of birth is before 1900, so it cannot be true for a patient of the warehouse (usually a mistyped century).
-- expected: a date in 1900 or later
--
-- Grain: one row per failing date of a record. recorded_date is every date of every stage table,
-- built from the DDL (etl/quality/sql_checks.py), with the year of birth read as 1 January.
SELECT
    source_id,
    source_record_key,
    table_name,
    field,
    shown AS value,
    table_name || '.' || field || ' ' || shown || ' is before 1900' AS message
FROM recorded_date
WHERE value < DATE '1900-01-01'
