-- rule_id: XT-DATE-NOT-AFTER-EXPORT
-- category: plausibility
-- subcategory: verification
-- level: cross-table
-- severity: error
-- threshold: 0
-- table: recorded_date
-- description: A date (of any table: enrolment, diagnosis, treatment, contact, ...) or a year of birth is later than the day the export was made, so it cannot be true.
-- expected: a date on or before the export date: the date in the file name, else the day the file says it was written (ODM CreationDateTime), else the day the file was written in the latest time zone (a year of birth no later than the export year)
--
-- Grain: one row per failing date of a record (a record may fail on several of its dates).
-- recorded_date is every date of every stage table, built from the DDL (etl/quality/sql_checks.py),
-- with the year of birth read as 1 January of that year. Each record is judged against the export
-- it came from (meta.source_file.exported_on), not the run's date: a centre cannot have known a
-- date after it wrote the file. These are calendar days with no time of day: the export day a file's
-- name gives is the source system's own, as is an ODM's CreationDateTime (read in the writer's zone);
-- one from its modification time (an instant) is the latest day
-- that instant is anywhere (UTC+14, etl/extract/landing.py export_day), since a centre dates its records
-- by its own day in a time zone the warehouse does not know. A record whose file has no export date is
-- not judged.
WITH export_now AS (
    -- the export each record is in now: a row carried over keeps the export that first delivered it
    SELECT DISTINCT source_id, source_record_key, source_file_sha256 FROM record
),

dated AS (
    SELECT d.*, f.exported_on, f.file_name
    FROM recorded_date d
    JOIN export_now n USING (source_id, source_record_key)
    JOIN meta.source_file f ON f.source_id = n.source_id AND f.source_file_sha256 = n.source_file_sha256
)

SELECT
    source_id,
    source_record_key,
    table_name,
    field,
    shown AS value,
    table_name || '.' || field || ' ' || shown || ' is after the export of ' || exported_on
        || ' (' || file_name || ')' AS message
FROM dated
WHERE value > exported_on
