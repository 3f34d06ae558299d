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
-- 1582-10-14 is SPSS's date 0, which a date left empty and typed as 0 reads as: said so, not a century.
SELECT
    source_id,
    source_record_key,
    table_name,
    field,
    shown AS value,
    table_name || '.' || field || ' ' || shown
        || CASE WHEN value = DATE '1582-10-14'
                THEN ' is SPSS''s date 0, before 1900: no date entered? (the mapping''s null_values can name "1582-10-14")'
                ELSE ' is before 1900' END AS message
FROM recorded_date
WHERE value < DATE '1900-01-01'
