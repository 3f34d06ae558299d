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
    target_tables       VARCHAR[]
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
