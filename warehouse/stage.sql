-- stage: every record of every source as last delivered and harmonised, before the quality
-- rules judge it. A changed export replaces its source's rows here; core is then rebuilt from
-- stage on each validated run, minus the records held back (dq.quarantine). Internal to the
-- pipeline: analysts read core and marts. The per-table copies (stage.diagnosis, ...) have the
-- core tables' columns and are created from them by the publish step.

CREATE SCHEMA IF NOT EXISTS stage;

-- One row per source record (an ItemGroupData, a CSV row), clean or not.
CREATE TABLE IF NOT EXISTS stage.record (
    source_id           VARCHAR NOT NULL,
    source_file         VARCHAR,
    source_file_sha256  VARCHAR,
    source_record_key   VARCHAR NOT NULL,
    record_set          VARCHAR,
    line                BIGINT,
    centre_id           VARCHAR,
    patient_pseudonym   VARCHAR,
    target_tables       VARCHAR[],
    -- A record joined from sections (`from: [HEAD, SECTION, ...]`): per section (its record set) the
    -- file its row came from, counted where the record goes (loaded or quarantined); NULL: none joined.
    section_file_sha256 MAP(VARCHAR, VARCHAR)
);

-- One row per value harmonise could not turn into a core value, with the rule it breaks.
CREATE TABLE IF NOT EXISTS stage.rejection (
    source_id           VARCHAR NOT NULL,
    source_record_key   VARCHAR NOT NULL,
    rule_id             VARCHAR NOT NULL,
    field               VARCHAR,
    value               VARCHAR,
    message             VARCHAR
);

-- One row per parameter a source sets under `params:` in its sources/<source>.yaml (e.g.
-- max_age_years = 18), refreshed by each validation from every mapping. Rules that depend on
-- whom a source enrols read these (typed, through the view stage.source_params), never a source id.
CREATE TABLE IF NOT EXISTS stage.source_param (
    source_id           VARCHAR NOT NULL,
    name                VARCHAR NOT NULL,
    value               VARCHAR
);

-- One row per source patient (harmonise's link_keys.parquet): what linkage (etl/link) needs
-- beyond the coarsened demographics of stage.patient_source. The birth date is here only as
-- keyed HMAC tokens (of the date, and of the date with day and month swapped); never in clear.
CREATE TABLE IF NOT EXISTS stage.link_key (
    source_id                   VARCHAR NOT NULL,
    source_patient_pseudonym    VARCHAR NOT NULL,
    source_record_key           VARCHAR NOT NULL,  -- the patient record, so rtw forget erases the row
    harmonised_patient_id       VARCHAR NOT NULL,  -- harmonise's own id: the EUPID digest, else per source
    has_eupid                   BOOLEAN NOT NULL,
    birth_token                 VARCHAR,           -- NULL: the source gives month or year only
    birth_swapped_token         VARCHAR
);

-- One row per source patient: the person linkage put them in, scored from stage.link_key (never
-- from its own output) or, while nothing linkage reads changed, carried over from the last scoring
-- (dq.link_scored). Every stage table's patient_id is rewritten from it through
-- stage.record.patient_pseudonym.
CREATE TABLE IF NOT EXISTS stage.patient_link (
    source_id                   VARCHAR NOT NULL,
    source_patient_pseudonym    VARCHAR NOT NULL,
    source_record_key           VARCHAR NOT NULL,
    harmonised_patient_id       VARCHAR NOT NULL,
    patient_id                  VARCHAR NOT NULL,
    link_method                 VARCHAR NOT NULL,  -- eupid / probabilistic / clerical / unlinked
    match_probability           DOUBLE
);
