-- Data quality: records held back from core, with every reason.

CREATE SCHEMA IF NOT EXISTS dq;

-- One row per source record held back (quarantined) in the current warehouse.
CREATE TABLE IF NOT EXISTS dq.quarantine (
    run_id              VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    source_file         VARCHAR,
    source_file_sha256  VARCHAR,
    source_record_key   VARCHAR NOT NULL,  -- pseudonymised: <patient pseudonym>|<local part>
    record_set          VARCHAR,           -- form / item group the record came from
    line                BIGINT,            -- where the record starts in the export
    target_tables       VARCHAR[],
    reasons             VARCHAR[]
);
