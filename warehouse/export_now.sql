-- export_now(): per export file a row names, the day of the export its record is in now: the file's own while it
-- is loaded, else the latest loaded file of its series (else its own: a file of no series, or none loaded). A row
-- carried over unchanged keeps, as its lineage, the earlier export that first delivered it
-- (etl/transform/carry_over.py), which a fresh load of the same exports would not name; what a date is bounded by
-- (not after the export) must not depend on that. Carry-over needs one file per record set, so this is the file
-- stage.record names, which the rules read (XT-DATE-NOT-AFTER-EXPORT) and the marts' hand-made test warehouses lack.
-- A temporary macro of the connections that derive core.patient (warehouse/patient.sql: a partial death) and the
-- marts (marts.patient_summary: a partial last contact).
CREATE OR REPLACE TEMP MACRO export_now() AS TABLE
    SELECT file.source_id, file.source_file_sha256,
           CASE WHEN file.status = 'loaded' THEN file.exported_on
                ELSE coalesce(max(now.exported_on), file.exported_on) END AS exported_on
    FROM meta.source_file AS file
    LEFT JOIN meta.source_file AS now
        ON now.source_id = file.source_id AND now.series = file.series AND now.status = 'loaded'
    GROUP BY file.source_id, file.source_file_sha256, file.status, file.exported_on;
