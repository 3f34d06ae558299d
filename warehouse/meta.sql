-- Run bookkeeping: what each nightly run did, and where every source file's rows went.

CREATE SCHEMA IF NOT EXISTS meta;

-- One row per run of the nightly import.
CREATE TABLE IF NOT EXISTS meta.run (
    run_id              VARCHAR PRIMARY KEY,
    trigger             VARCHAR,      -- cli / airflow
    started_at          TIMESTAMPTZ,
    finished_at         TIMESTAMPTZ,
    status              VARCHAR,      -- completed / completed_with_failures
    sources_changed     VARCHAR[],
    sources_unchanged   VARCHAR[],
    sources_failed      VARCHAR[],
    message             VARCHAR,
    validated           BOOLEAN,      -- rules and marts ran (a source or a definition changed)
    rules_fingerprint   VARCHAR       -- sha256 over the rules, source overrides, marts and comments applied
);

-- One row per source file ever seen (by content): rows_read = loaded + quarantined + superseded.
CREATE TABLE IF NOT EXISTS meta.source_file (
    source_id           VARCHAR NOT NULL,
    source_file_sha256  VARCHAR NOT NULL,
    file_name           VARCHAR,
    size_bytes          BIGINT,
    series              VARCHAR,      -- files of one series replace each other (a form, an ODM study)
    status              VARCHAR,      -- loaded / superseded / failed / held
    first_run_id        VARCHAR,
    last_run_id         VARCHAR,
    rows_read           BIGINT,
    rows_loaded         BIGINT,
    rows_quarantined    BIGINT,
    rows_superseded     BIGINT,
    message             VARCHAR,
    exported_on         DATE,         -- when the source system wrote the file (name date, else mtime)
    PRIMARY KEY (source_id, source_file_sha256)
);

-- One row per source: the fingerprint of what is loaded, so unchanged sources are skipped.
CREATE TABLE IF NOT EXISTS meta.source (
    source_id           VARCHAR PRIMARY KEY,
    fingerprint         VARCHAR,      -- sha256 over current file hashes + mapping file
    last_loaded_run_id  VARCHAR,
    last_attempt_run_id VARCHAR,
    status              VARCHAR,      -- loaded / failed / held
    message             VARCHAR
);

-- One row per record a transactional export removed (TransactionType Remove), kept for the audit:
-- the record is gone from stage and core, its removal is not.
CREATE TABLE IF NOT EXISTS meta.record_removal (
    source_id           VARCHAR NOT NULL,
    source_record_key   VARCHAR NOT NULL,  -- <patient pseudonym>|<local part>, as the record was published
    record_set          VARCHAR,
    level               VARCHAR,           -- the element the Remove was written at (SubjectData ... ItemGroupData)
    source_file         VARCHAR,           -- the increment that removed it
    source_file_sha256  VARCHAR,
    run_id              VARCHAR            -- the run that applied the removal
);

-- What the landing folders, the readers and the mapping engine noted about a source in a run,
-- beyond errors: a file's dialect, records of ignored record sets (counted here, as they are
-- neither loaded nor quarantined), files that match no pattern, a landing folder no mapping reads.
-- A file whose name holds a patient number is named with {patient} in its place, here and in
-- every other table (etl/extract/file_names.py).
CREATE TABLE IF NOT EXISTS meta.source_notice (
    run_id              VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    notice              VARCHAR NOT NULL
);

-- One row per acceptance (`rtw accept`) of an export a guard held or of a loaded file's departure,
-- recorded by the run that acted on it (warehouse/comments.sql says the rest).
CREATE TABLE IF NOT EXISTS meta.file_acceptance (
    source_id           VARCHAR NOT NULL,
    source_file_sha256  VARCHAR NOT NULL,
    file_name           VARCHAR,
    accepted_at         TIMESTAMPTZ,
    accepted_by         VARCHAR,       -- the operating-system user who ran rtw accept
    run_id              VARCHAR,       -- the run that loaded the accepted file
    departure           BOOLEAN        -- the file's departure was accepted: the source loads without it
);

-- One row per pseudonymisation key the warehouse has been built with; the current one has no
-- retired_run_id. A fingerprint is an HMAC of a fixed label under the key, never the key: a run
-- whose key has another fingerprint is refused before it harmonises anything (rtw rekey rotates).
CREATE TABLE IF NOT EXISTS meta.key_fingerprint (
    fingerprint         VARCHAR NOT NULL,  -- hex HMAC-SHA256 of a fixed label under the key
    first_run_id        VARCHAR NOT NULL,  -- the run that first published with the key
    recorded_at         TIMESTAMPTZ,
    retired_run_id      VARCHAR            -- the rekey run that replaced the key; NULL: current
);

-- Per source, what core was last admitted from: the fingerprint of its stage rows and quarantine
-- (etl/quality/rule_memo.py, phase admitted). A publish compares the core rows of the other sources only.
CREATE TABLE IF NOT EXISTS meta.core_admitted (
    source_id           VARCHAR PRIMARY KEY,
    fingerprint         VARCHAR NOT NULL
);

-- What went wrong after a run's publish without undoing it: a Parquet marts export, the report, the
-- dictionary page or the survival plot that could not be written (the next run's repair retries).
CREATE TABLE IF NOT EXISTS meta.run_note (
    run_id              VARCHAR NOT NULL,
    noted_at            TIMESTAMPTZ,
    note                VARCHAR NOT NULL
);

-- One row per patient erased on withdrawal of consent (rtw forget), by keyed pseudonym only:
-- harmonise leaves these patients out of every later run while the exports still hold them.
CREATE TABLE IF NOT EXISTS meta.erasure (
    source_id                   VARCHAR NOT NULL,
    source_patient_pseudonym    VARCHAR NOT NULL,
    erased_at                   TIMESTAMPTZ,
    run_id                      VARCHAR,
    key_fingerprint             VARCHAR
);

-- One row per reviewer decision on a pair of source patients (rtw link / rtw unlink), by keyed
-- pseudonym: linkage applies the latest decision on each pair at every run.
CREATE TABLE IF NOT EXISTS meta.link_decision (
    source_id_l                 VARCHAR NOT NULL,
    source_patient_pseudonym_l  VARCHAR NOT NULL,
    source_id_r                 VARCHAR NOT NULL,
    source_patient_pseudonym_r  VARCHAR NOT NULL,
    decision                    VARCHAR NOT NULL,  -- link / unlink
    decided_by                  VARCHAR,           -- the operating-system user who ran rtw link / unlink
    decided_at                  TIMESTAMPTZ NOT NULL,
    note                        VARCHAR
);

-- Queries to centres (rtw queries, docs/queries.md). One row per batch of queries sent to a centre:
-- the workbook written, from which run's findings, by whom. A centre is a source's centre: each source
-- numbers its own (iltb's FR04 and sacha_fr's FR04 are two hospitals), so a batch is of one source.
CREATE TABLE IF NOT EXISTS meta.query_batch (
    batch_id            VARCHAR PRIMARY KEY,
    centre_id           VARCHAR NOT NULL,  -- the source's own centre code
    run_id              VARCHAR NOT NULL,  -- the run whose findings were sent
    sent_at             TIMESTAMPTZ NOT NULL,
    sent_by             VARCHAR,           -- the operating-system user who ran rtw queries
    selection           VARCHAR NOT NULL,  -- all / new_only / reminders
    older_than_days     INTEGER,           -- reminders: queries first sent more than this many days before
    file_name           VARCHAR,           -- the workbook written (the CSV beside it holds the same rows)
    -- Last, as an upgrade adds it to a warehouse of an older version: null in the batches sent before,
    -- which held every source's issues at the centre code (their rows: meta.query_item.source_id).
    source_id           VARCHAR            -- the source whose centre was queried
);

-- One row per issue sent in a batch (a row of its workbook), identified like an issue across runs
-- (rule, source, record, field); `cells` holds the row's shown cells as sent, so an edit is named.
CREATE TABLE IF NOT EXISTS meta.query_item (
    batch_id            VARCHAR NOT NULL,
    row_key             VARCHAR NOT NULL,  -- hex HMAC under the pseudonymisation key: batch, issue, cells
    rule_id             VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    source_record_key   VARCHAR NOT NULL,  -- pseudonymised: <patient pseudonym>|<local part>
    field               VARCHAR,
    value_hash          VARCHAR NOT NULL,  -- sha256 of the value as shown ('null' for none)
    severity            VARCHAR,
    cells               VARCHAR NOT NULL   -- JSON list of the row's cells as written
);

-- One row per answer imported from a returned workbook (rtw responses import); a file imported
-- again adds nothing.
CREATE TABLE IF NOT EXISTS meta.query_response (
    batch_id            VARCHAR NOT NULL,
    row_key             VARCHAR NOT NULL,
    response            VARCHAR NOT NULL,  -- corrected / confirmed / cannot_determine
    comment             VARCHAR,           -- the centre's words, as written
    file_name           VARCHAR,
    file_sha256         VARCHAR,
    row_number          BIGINT,            -- the row of the returned file
    imported_by         VARCHAR,           -- the operating-system user who ran rtw responses import
    imported_at         TIMESTAMPTZ NOT NULL
);

-- One row per finding a centre confirmed as true (a query answered `confirmed`), keyed by record,
-- rule, field and the value's hash: validation waives the finding while the value is unchanged.
CREATE TABLE IF NOT EXISTS meta.waiver (
    source_id           VARCHAR NOT NULL,
    source_record_key   VARCHAR NOT NULL,
    rule_id             VARCHAR NOT NULL,
    field               VARCHAR,
    value_hash          VARCHAR NOT NULL,  -- sha256 of the value as shown ('null' for none)
    centre_id           VARCHAR,           -- the centre that confirmed it
    batch_id            VARCHAR NOT NULL,  -- the query batch answered
    confirmed_at        TIMESTAMPTZ NOT NULL,
    imported_by         VARCHAR            -- the operating-system user who imported the answer
);
