-- Core schema of the Rare Tumour Warehouse (PARTNER-style).
-- Grain of each table is stated above it. Every table carries the lineage columns
-- source_id, source_file_sha256, source_record_key, run_id, so any row can be traced to the
-- exact record of the exact export it came from: the export that delivered it as it now is (a
-- later export repeating it unchanged leaves the row as it was). No direct identifiers: patient_id and
-- source_patient_pseudonym are keyed HMAC-SHA256 pseudonyms; birth dates are kept as year
-- and month only. Dates that sources give partially carry a *_precision column
-- (day, month, year).

CREATE SCHEMA IF NOT EXISTS core;

-- One row per linked person.
CREATE TABLE core.patient (
    patient_id              VARCHAR NOT NULL PRIMARY KEY,
    sex                     VARCHAR,   -- female / male / undetermined / unknown
    birth_year              INTEGER,
    birth_month             INTEGER,
    country                 VARCHAR,   -- ISO 3166-1 alpha-2, country of residence
    vital_status            VARCHAR,   -- alive / dead / lost / opted_out / unknown
    death_date              DATE,
    death_date_precision    VARCHAR,   -- day / month / year
    last_contact_date       DATE,
    n_sources               INTEGER,
    source_id               VARCHAR NOT NULL,  -- the source that contributed the demographics
    source_file_sha256      VARCHAR NOT NULL,
    source_record_key       VARCHAR NOT NULL,
    run_id                  VARCHAR NOT NULL
);

-- One row per person per source.
CREATE TABLE core.patient_source (
    patient_id              VARCHAR NOT NULL,
    source_patient_pseudonym VARCHAR NOT NULL,
    centre_id               VARCHAR,
    link_method             VARCHAR NOT NULL,  -- eupid / probabilistic / clerical / unlinked (etl/link)
    match_probability       DOUBLE,
    sex                     VARCHAR,   -- as this source gives it, harmonised
    birth_year              INTEGER,   -- coarsened: the exact birth date never leaves harmonise
    birth_month             INTEGER,
    country                 VARCHAR,
    source_id               VARCHAR NOT NULL,
    source_file_sha256      VARCHAR NOT NULL,
    source_record_key       VARCHAR NOT NULL,
    run_id                  VARCHAR NOT NULL,
    PRIMARY KEY (source_id, source_patient_pseudonym)
);

-- One row per enrolment of a person in a study or registry.
CREATE TABLE core.study_enrolment (
    enrolment_id            VARCHAR NOT NULL PRIMARY KEY,
    patient_id              VARCHAR NOT NULL,
    study_id                VARCHAR NOT NULL,
    centre_id               VARCHAR,
    enrolment_date          DATE,
    enrolment_date_precision VARCHAR,
    age_at_enrolment_days   INTEGER,
    arm                     VARCHAR,
    lvef_percent            DOUBLE,    -- left-ventricular ejection fraction at screening (trial eligibility), %
    off_study_date          DATE,
    off_study_reason        VARCHAR,
    source_id               VARCHAR NOT NULL,
    source_file_sha256      VARCHAR NOT NULL,
    source_record_key       VARCHAR NOT NULL,
    run_id                  VARCHAR NOT NULL
);

-- One row per consent given (or withdrawn) by a person for a study.
CREATE TABLE core.consent (
    consent_id              VARCHAR NOT NULL PRIMARY KEY,
    patient_id              VARCHAR NOT NULL,
    study_id                VARCHAR NOT NULL,
    consent_type            VARCHAR,
    status                  VARCHAR,   -- given / withdrawn / refused
    consent_date            DATE,
    withdrawal_date         DATE,
    source_id               VARCHAR NOT NULL,
    source_file_sha256      VARCHAR NOT NULL,
    source_record_key       VARCHAR NOT NULL,
    run_id                  VARCHAR NOT NULL
);

-- One row per diagnosis event (initial diagnosis, relapse, progression) of a person.
CREATE TABLE core.diagnosis (
    diagnosis_id            VARCHAR NOT NULL PRIMARY KEY,
    patient_id              VARCHAR NOT NULL,
    event_type              VARCHAR,   -- initial / relapse / progression
    diagnosis_date          DATE,
    diagnosis_date_precision VARCHAR,
    age_at_diagnosis_days   INTEGER,
    icdo3_morphology        VARCHAR,   -- 4 digits, e.g. 9510
    icdo3_behaviour         VARCHAR,   -- 0, 1, 2, 3
    icdo3_topography        VARCHAR,   -- C00.0 - C80.9
    grade                   VARCHAR,
    laterality              VARCHAR,   -- left / right / bilateral / not_applicable / unknown
    basis_of_diagnosis      VARCHAR,   -- ENCR codes 0-9 as text
    disease_label           VARCHAR,   -- the source's own wording of the disease
    tumour_size_mm          DOUBLE,
    iccc3_code              VARCHAR,   -- IARC 2017 main-classification recode, e.g. 050
    iccc3_group             VARCHAR,   -- main group, Roman numeral, e.g. V
    iccc3_subgroup          VARCHAR,   -- e.g. VIII(a)
    iccc3_extended          VARCHAR,   -- IARC 2017 extended recode, e.g. 035
    is_very_rare            BOOLEAN,
    iccc3_extension         VARCHAR,   -- why an RTW extension classified it (e.g. IMT 8825/1); NULL: the IARC table did
    source_id               VARCHAR NOT NULL,
    source_file_sha256      VARCHAR NOT NULL,
    source_record_key       VARCHAR NOT NULL,
    run_id                  VARCHAR NOT NULL
);

-- One row per molecular alteration or marker reported for a person.
CREATE TABLE core.molecular_alteration (
    alteration_id           VARCHAR NOT NULL PRIMARY KEY,
    patient_id              VARCHAR NOT NULL,
    gene_symbol             VARCHAR,   -- HGNC
    partner_gene            VARCHAR,   -- fusions: EML4::ALK is gene_symbol EML4, partner_gene ALK
    alteration_type         VARCHAR,   -- SNV / indel / CNV / fusion / expression / surface_marker
    alteration              VARCHAR,   -- display form: KMT2A::AFF1, CD19, ...
    hgvs                    VARCHAR,
    assay                   VARCHAR,
    is_actionable           BOOLEAN,
    report_date             DATE,
    report_date_precision   VARCHAR,
    source_id               VARCHAR NOT NULL,
    source_file_sha256      VARCHAR NOT NULL,
    source_record_key       VARCHAR NOT NULL,
    run_id                  VARCHAR NOT NULL
);

-- One row per molecular tumour board review (a submission and its advice).
CREATE TABLE core.tumour_board_review (
    review_id               VARCHAR NOT NULL PRIMARY KEY,
    patient_id              VARCHAR NOT NULL,
    board                   VARCHAR,
    submission_date         DATE,
    submission_date_precision VARCHAR,
    recommendation_date     DATE,
    recommendation_date_precision VARCHAR,
    priority_rank           INTEGER,
    recommendation_type     VARCHAR,   -- trial / off_label / compassionate / standard / none
    recommended_agents      VARCHAR,   -- INN, '|'-separated
    treatment_intent        VARCHAR,   -- bridging / palliative / curative
    advice_followed         BOOLEAN,
    reason_not_followed     VARCHAR,
    source_id               VARCHAR NOT NULL,
    source_file_sha256      VARCHAR NOT NULL,
    source_record_key       VARCHAR NOT NULL,
    run_id                  VARCHAR NOT NULL
);

-- One row per drug given in a line of treatment.
CREATE TABLE core.treatment (
    treatment_id            VARCHAR NOT NULL PRIMARY KEY,
    patient_id              VARCHAR NOT NULL,
    line_number             INTEGER,
    drug_name               VARCHAR,   -- INN, lower case
    atc_code                VARCHAR,
    access_route            VARCHAR,   -- trial / off_label / compassionate / standard
    start_date              DATE,
    start_date_precision    VARCHAR,
    end_date                DATE,
    end_date_precision      VARCHAR,
    end_reason              VARCHAR,
    source_id               VARCHAR NOT NULL,
    source_file_sha256      VARCHAR NOT NULL,
    source_record_key       VARCHAR NOT NULL,
    run_id                  VARCHAR NOT NULL
);

-- One row per response assessment.
CREATE TABLE core.response_assessment (
    response_id             VARCHAR NOT NULL PRIMARY KEY,
    patient_id              VARCHAR NOT NULL,
    treatment_id            VARCHAR,
    assessment_date         DATE,
    timepoint               VARCHAR,   -- cycle1 / best / end_of_treatment
    criteria                VARCHAR,   -- RECIST1.1 / RANO / INRC / leukaemia
    response                VARCHAR,   -- CR / PR / SD / PD / NE / CRi / MLFS / NR
    mrd_value               DOUBLE,    -- percent
    source_id               VARCHAR NOT NULL,
    source_file_sha256      VARCHAR NOT NULL,
    source_record_key       VARCHAR NOT NULL,
    run_id                  VARCHAR NOT NULL
);

-- One row per adverse event.
CREATE TABLE core.adverse_event (
    ae_id                   VARCHAR NOT NULL PRIMARY KEY,
    patient_id              VARCHAR NOT NULL,
    treatment_id            VARCHAR,
    term                    VARCHAR,
    meddra_code             VARCHAR,
    ctcae_grade             INTEGER,   -- CTCAE v5, 1-5
    onset_date              DATE,
    onset_date_precision    VARCHAR,
    end_date                DATE,
    end_date_precision      VARCHAR,
    is_serious              BOOLEAN,
    relatedness             VARCHAR,   -- related / not_related / unknown
    outcome                 VARCHAR,   -- recovered / recovering / not_recovered / sequelae / fatal / unknown
    source_id               VARCHAR NOT NULL,
    source_file_sha256      VARCHAR NOT NULL,
    source_record_key       VARCHAR NOT NULL,
    run_id                  VARCHAR NOT NULL
);

-- One row per follow-up contact.
CREATE TABLE core.follow_up (
    follow_up_id            VARCHAR NOT NULL PRIMARY KEY,
    patient_id              VARCHAR NOT NULL,
    contact_date            DATE,
    contact_date_precision  VARCHAR,
    vital_status            VARCHAR,   -- alive / dead / lost / opted_out
    death_date              DATE,
    death_date_precision    VARCHAR,
    disease_status          VARCHAR,   -- no_evidence_of_disease / stable / progression / unknown
    trial_enrolment_status  VARCHAR,   -- enrolled / not_enrolled (ILTB's 3-monthly follow-up)
    trial_enrolment_reason  VARCHAR,   -- the physician's reason, a code (comments.sql)
    source_id               VARCHAR NOT NULL,
    source_file_sha256      VARCHAR NOT NULL,
    source_record_key       VARCHAR NOT NULL,
    run_id                  VARCHAR NOT NULL
);
