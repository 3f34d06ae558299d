-- Data quality: the rule catalogue, what each rule found on each run, and the records held back.
-- Rules come from expectations/*.json (GX suites, one per core table), warehouse/checks/*.sql
-- (cross-table rules) and the conformance checks harmonise applies while parsing values
-- (expectations/harmonise.json). check_result and issue keep every run, so runs can be compared
-- (issue as spans of runs: a run adds what changed).

CREATE SCHEMA IF NOT EXISTS dq;

-- The rule catalogue as of the latest run: one row per rule.
CREATE TABLE IF NOT EXISTS dq.check (
    rule_id             VARCHAR PRIMARY KEY,
    category            VARCHAR NOT NULL,  -- conformance / completeness / plausibility (Kahn)
    subcategory         VARCHAR NOT NULL,  -- verification / validation
    level               VARCHAR NOT NULL,  -- field / record / table / cross-table
    severity            VARCHAR NOT NULL,  -- error (record quarantined) / warning (record loaded, flagged)
    threshold           DOUBLE NOT NULL,   -- share of failing rows tolerated before the rule fails (0-1)
    table_name          VARCHAR,           -- core table the rule judges
    field               VARCHAR,           -- core field, NULL for record/table rules
    description         VARCHAR NOT NULL,  -- one sentence a quality officer understands
    expected            VARCHAR,           -- what a correct value looks like, for queries to centres
    engine              VARCHAR NOT NULL,  -- gx / sql / harmonise
    definition          VARCHAR NOT NULL,  -- file the rule is defined in, relative to the repository
    confirmable         BOOLEAN            -- a centre may confirm a finding as true, which waives it (meta.waiver)
);

-- One row per run x rule x source x centre (centre_id NULL: the source's records with no centre).
CREATE TABLE IF NOT EXISTS dq.check_result (
    run_id              VARCHAR NOT NULL,
    rule_id             VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    centre_id           VARCHAR,
    failing_rows        BIGINT NOT NULL,
    denominator         BIGINT NOT NULL,
    percent             DOUBLE,            -- 100 * failing / denominator; NULL when denominator = 0
    threshold           DOUBLE NOT NULL,   -- after the source's override, if any
    status              VARCHAR NOT NULL,  -- passed / failed / not_applicable / error
    message             VARCHAR,           -- why not_applicable (switched off, no rows) or the error
    waived_rows         BIGINT             -- rows failing the rule but waived (confirmed by the centre), not failing
);

-- The validated runs, numbered in the order they validated (dq.issue_span counts runs by them).
CREATE TABLE IF NOT EXISTS dq.validation (
    run_id              VARCHAR PRIMARY KEY,
    number              INTEGER NOT NULL UNIQUE  -- 1, 2, ... in the order the runs validated
);

-- One row per rule x failing record (x field) x unbroken series of validated runs that found it alike
-- (every column equal): a run stores the issues that are new or gone, not all of them again. At
-- 100,000 persons a run finds some 110,000 issues, 10 MiB a run as rows of their own.
CREATE TABLE IF NOT EXISTS dq.issue_span (
    first_validation    INTEGER NOT NULL,  -- dq.validation.number of the first run that found it
    last_validation     INTEGER,           -- of the last one; NULL while the latest validation finds it
    rule_id             VARCHAR NOT NULL,
    severity            VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    centre_id           VARCHAR,
    table_name          VARCHAR,
    source_record_key   VARCHAR NOT NULL,  -- pseudonymised: <patient pseudonym>|<local part>
    patient_pseudonym   VARCHAR,           -- the source's patient pseudonym (what a centre is sent)
    record_set          VARCHAR,           -- form / item group the record came from
    line                BIGINT,            -- where the record starts in the export
    field               VARCHAR,
    value               VARCHAR,           -- the offending value; birth dates and EUPIDs never shown
    message             VARCHAR            -- what is wrong, in words
);

-- One row per run x rule x failing record (x field): the spans, spread over the runs they cover.
-- (IF NOT EXISTS: replacing it would drop its comments in a run that does not apply them.)
CREATE VIEW IF NOT EXISTS dq.issue AS
SELECT v.run_id, s.rule_id, s.severity, s.source_id, s.centre_id, s.table_name, s.source_record_key,
       s.patient_pseudonym, s.record_set, s.line, s.field, s.value, s.message
FROM dq.issue_span s
JOIN dq.validation v ON v.number BETWEEN s.first_validation AND coalesce(s.last_validation, v.number);

-- One row per run x rule x failing record (x field) that a centre confirmed as true (meta.waiver):
-- the same columns as dq.issue, but the record is loaded unflagged and not queried again. A waived
-- finding stays here, visible, while its value is the one confirmed; a changed value reopens it.
CREATE TABLE IF NOT EXISTS dq.waived_issue (
    run_id              VARCHAR NOT NULL,
    rule_id             VARCHAR NOT NULL,
    severity            VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    centre_id           VARCHAR,
    table_name          VARCHAR,
    source_record_key   VARCHAR NOT NULL,
    patient_pseudonym   VARCHAR,
    record_set          VARCHAR,
    line                BIGINT,
    field               VARCHAR,
    value               VARCHAR,
    message             VARCHAR,
    batch_id            VARCHAR,           -- the query batch the confirmation answered (meta.query_batch)
    confirmed_at        TIMESTAMPTZ        -- when the confirmation was imported
);

-- One row per source record held back (quarantined) in the current warehouse, with every reason.
-- Rebuilt on every run: a record corrected in a later export is released on that run.
CREATE TABLE IF NOT EXISTS dq.quarantine (
    run_id              VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    source_file         VARCHAR,
    source_file_sha256  VARCHAR,
    source_record_key   VARCHAR NOT NULL,
    record_set          VARCHAR,
    line                BIGINT,
    centre_id           VARCHAR,
    target_tables       VARCHAR[],
    rule_ids            VARCHAR[],
    reasons             VARCHAR[]
);

-- One row per pair of source patients (in two sources) whose match probability lies between the
-- review and the link threshold (etl/link): the clerical review list of the report. Evidence per
-- field is a label (agree, swap, month-only, disagree, missing, ...), never a value.
CREATE TABLE IF NOT EXISTS dq.link_candidate (
    run_id                      VARCHAR NOT NULL,
    source_id_l                 VARCHAR NOT NULL,
    source_patient_pseudonym_l  VARCHAR NOT NULL,
    source_id_r                 VARCHAR NOT NULL,
    source_patient_pseudonym_r  VARCHAR NOT NULL,
    match_weight                DOUBLE NOT NULL,
    match_probability           DOUBLE NOT NULL,
    evidence                    VARCHAR NOT NULL,  -- JSON object: field -> evidence label
    decision                    VARCHAR            -- a reviewer's decision on the pair, if any
);

-- What the persons of stage.patient_link and the pairs of dq.link_candidate were linked from
-- (etl/link/run.py): while the fingerprint holds, a run keeps them instead of scoring again. One row.
CREATE TABLE IF NOT EXISTS dq.link_scored (
    fingerprint           VARCHAR NOT NULL,
    links_checksum        VARCHAR NOT NULL,
    run_id                VARCHAR NOT NULL,
    source_patients       BIGINT NOT NULL,
    pairs_scored          BIGINT NOT NULL,
    linked_probabilistic  BIGINT NOT NULL,
    linked_clerical       BIGINT NOT NULL,
    review_candidates     BIGINT NOT NULL,
    unapplied             VARCHAR              -- JSON: [[source_id, why], ...]; NULL (an older warehouse): scored again
);

-- What GX found in each source's rows of a table, kept so that a run judges again only the rows that
-- changed (etl/quality/gx_memo.py). A source's findings stand while the fingerprint of its rows, their
-- centres and the table's rules is the one recorded here; the run named judged them (its Data Docs).
CREATE TABLE IF NOT EXISTS dq.gx_judged (
    table_name          VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    fingerprint         VARCHAR NOT NULL,
    run_id              VARCHAR NOT NULL
);

-- One row per rule x source x centre GX judged (as dq.check_result's denominator, before the threshold).
CREATE TABLE IF NOT EXISTS dq.gx_denominator (
    table_name          VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    rule_id             VARCHAR NOT NULL,
    centre_id           VARCHAR,
    denominator         BIGINT NOT NULL
);

-- One row per rule x row GX found failing (before waivers: dq.issue is made from these every run).
CREATE TABLE IF NOT EXISTS dq.gx_failure (
    table_name          VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    rule_id             VARCHAR NOT NULL,
    source_record_key   VARCHAR NOT NULL,
    field               VARCHAR,
    value               VARCHAR,
    message             VARCHAR             -- a rule over several columns says their values
);

-- What the SQL rules and harmonise's checks found in each source, kept so that a run judges again only
-- the sources whose stage rows changed (etl/quality/rule_memo.py): per phase of the rules (staged /
-- admitted), a source's findings stand while the fingerprint recorded here holds.
CREATE TABLE IF NOT EXISTS dq.rule_judged (
    phase               VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    fingerprint         VARCHAR NOT NULL,
    run_id              VARCHAR NOT NULL
);

-- One row per rule x source x centre judged (as dq.check_result's denominator, before the threshold).
CREATE TABLE IF NOT EXISTS dq.rule_denominator (
    phase               VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    rule_id             VARCHAR NOT NULL,
    centre_id           VARCHAR,
    denominator         BIGINT NOT NULL
);

-- One row per rule x record found failing (before waivers: dq.issue is made from these every run).
CREATE TABLE IF NOT EXISTS dq.rule_failure (
    phase               VARCHAR NOT NULL,
    source_id           VARCHAR NOT NULL,
    rule_id             VARCHAR NOT NULL,
    source_record_key   VARCHAR NOT NULL,
    field               VARCHAR,
    value               VARCHAR,
    message             VARCHAR,
    table_name          VARCHAR
);
