-- marts.patient_summary: one row per linked patient (core.patient).
--
-- Definitions
--   first diagnosis: of the patient's initial diagnoses in any source, the one that must have come first
--     (came_first of mart_functions.sql: the earliest last day it can be on, of equal ones the most precise;
--     ties: diagnosis_id), as marts.survival chooses its origin diagnosis: "2021" from one source and
--     10 March 2021 from another make a first diagnosis on 10 March, in both marts. A relapse or progression
--     (the one that must have come first) is the first diagnosis only when it must have come before that
--     initial diagnosis (its last day before the initial's first day: a second tumour's, or a date error), or
--     when no initial diagnosis is dated; for a patient known only to a relapse registry it is the relapse:
--     first_diagnosis_event_type says which. (marts.survival's origin diagnosis is the first malignant one of a
--     registered patient: where this one is benign, from a death certificate only or undated, it is a later one.)
--   disease: ICCC-3 group and subgroup of the first diagnosis; the other marts use this subgroup
--     as "the patient's disease", so a patient is counted under one disease everywhere.
--   last contact: the latest contact in any source (core.patient's last_contact_date, the latest first day a
--     contact can be on); one known only to its month or year (last_contact_date_precision, of the most precise
--     contact on that day) is placed in the middle of the days it can be on (placed_date of mart_functions.sql),
--     not before the latest day a diagnosis (a relapse or progression too), a treatment start or a response
--     assessment says the patient was alive on (alive_on of mart_functions.sql: "2025" beside a treatment started
--     on 3 November 2025 is placed from 3 November), and not after the export its record is in now (a row carried
--     over from an earlier export names that one, a fresh load the later: the series' loaded file) nor the death,
--     as core.patient places a death: its first day would cut up to a year of follow-up from a patient censored
--     there.
--   follow-up: from the first diagnosis to the end of follow-up, which is the death date for a
--     dead patient and otherwise the last day the patient is known alive: the last contact, or a
--     diagnosis, treatment start or response assessment dated after it (alive_on of mart_functions.sql:
--     a follow-up form often lags the treatment forms); a death without a date counts there too. Without a
--     dated contact the end stays unknown. Negative times are kept as they are: they point to a date error in a source.
--     A first diagnosis known only to its month or year starts the follow-up in the middle of the
--     days it can be on (placed_date of mart_functions.sql, as marts.survival places its origins):
--     not before the first day the birth can be on, not after the last day another diagnosis or a
--     treatment start can be on, nor after a relapse or progression dated after its first day (efs_event of
--     mart_functions.sql), nor after the end of follow-up. first_diagnosis_date stays the date as the source
--     gave it (the first day of its period), beside first_diagnosis_date_precision.
--   birth year: NULL when it cannot be true (before 1900 or after the year of the latest export
--     loaded; the XT-DATE-* rules hold such records back unless a source switches them off).

CREATE SCHEMA IF NOT EXISTS marts;

CREATE OR REPLACE TABLE marts.patient_summary AS
WITH first_of_kind AS (
    -- Per patient, the initial diagnosis that must have come first, and the relapse or progression that must have.
    SELECT
        patient_id,
        diagnosis_date,
        coalesce(diagnosis_date_precision, 'day') AS diagnosis_date_precision,
        event_type,
        age_at_diagnosis_days,
        icdo3_morphology,
        iccc3_code,
        iccc3_group,
        iccc3_subgroup,
        is_very_rare
    FROM core.diagnosis
    QUALIFY row_number() OVER (
        PARTITION BY patient_id, event_type = 'initial'
        ORDER BY diagnosis_date IS NULL, came_first(diagnosis_date, diagnosis_date_precision),
                 CASE event_type WHEN 'initial' THEN 0 WHEN 'relapse' THEN 1 WHEN 'progression' THEN 2 ELSE 3 END,
                 diagnosis_id
    ) = 1
),

first_diagnosis AS (
    -- The initial diagnosis, unless the relapse must have come before it (its last day before the initial's first).
    SELECT *
    FROM first_of_kind
    QUALIFY row_number() OVER (
        PARTITION BY patient_id
        ORDER BY diagnosis_date IS NULL,
                 CASE WHEN event_type = 'initial' THEN diagnosis_date
                      ELSE period_end(diagnosis_date, diagnosis_date_precision) END,
                 event_type <> 'initial'
    ) = 1
),

relapses AS (
    SELECT patient_id, count(*) AS n_relapses
    FROM core.diagnosis
    WHERE event_type IN ('relapse', 'progression')
    GROUP BY patient_id
),

sources AS (
    SELECT
        patient_id,
        list_sort(list(DISTINCT source_id)) AS sources,
        list_sort(list(DISTINCT centre_id) FILTER (WHERE centre_id IS NOT NULL)) AS centres
    FROM core.patient_source
    GROUP BY patient_id
),

studies AS (
    SELECT
        patient_id,
        list_sort(list(DISTINCT study_id)) AS studies,
        min(enrolment_date) AS first_enrolment_date
    FROM core.study_enrolment
    GROUP BY patient_id
),

plausible_period AS (
    SELECT DATE '1900-01-01' AS earliest, coalesce(max(exported_on), current_date) AS latest
    FROM meta.source_file
    WHERE status = 'loaded'
),

last_contact AS (
    -- The latest contact as given: of the contacts on core.patient's last contact day, the most precise, and the
    -- day of the export it is in now (a NULL bounds nothing; no contact row: a day).
    SELECT
        patient.patient_id,
        patient.last_contact_date AS first_day,
        coalesce(arg_min(contact.precision, contact.came), 'day') AS precision,
        arg_min(export.exported_on, contact.came) AS exported_on,
        patient.death_date
    FROM core.patient AS patient
    LEFT JOIN (SELECT *, coalesce(contact_date_precision, 'day') AS precision,
                      came_first(contact_date, contact_date_precision) AS came FROM core.follow_up) AS contact
        ON contact.patient_id = patient.patient_id AND contact.contact_date = patient.last_contact_date
    LEFT JOIN export_now() AS export
        ON export.source_id = contact.source_id AND export.source_file_sha256 = contact.source_file_sha256
    WHERE patient.last_contact_date IS NOT NULL
    GROUP BY patient.patient_id, patient.last_contact_date, patient.death_date
),

alive AS (
    -- The days a diagnosis, treatment start or response assessment says the patient was alive on (alive_on of
    -- mart_functions.sql), against the last day the last contact can be on. Among the days the contact can be on, the
    -- latest (alive_on): the contact is not placed before it (one after them would bound nothing and leave the contact
    -- at the middle of its whole period). After them, the latest placed as the last contact is (seen_on: the middle of
    -- the days it can be on, not after the export it is in now nor the death): a follow-up form often lags the
    -- treatment and response forms, and marts.survival places a relapse known to its month or year there too.
    -- Only the days after the contact's first day can do either (one on or before it does not move the contact from its
    -- first day): the few read, not every day the patient was seen on, before the export's day is looked up and placed.
    SELECT
        last_contact.patient_id,
        max(alive.alive_on) FILTER (WHERE alive.alive_on <= last_contact.last_day) AS alive_on,
        max(placed_date(alive.alive_on, alive.precision, NULL, least(export.exported_on, last_contact.death_date)))
            FILTER (WHERE alive.alive_on > last_contact.last_day) AS seen_on
    FROM (SELECT *, placed_last_day(first_day, precision, least(exported_on, death_date)) AS last_day
          FROM last_contact) AS last_contact
    JOIN alive_on() AS alive
        ON alive.patient_id = last_contact.patient_id AND alive.alive_on > last_contact.first_day
    LEFT JOIN export_now() AS export
        ON export.source_id = alive.source_id AND export.source_file_sha256 = alive.source_file_sha256
    GROUP BY last_contact.patient_id
),

follow_up_end AS (
    -- The last contact placed in its period, not before the patient was last known alive in it (alive.alive_on), and
    -- the end of follow-up: the death, else the last day the patient is known alive (the last contact, or a later
    -- diagnosis, treatment start or response assessment as placed: alive.seen_on; for a death without a date, where it
    -- counts). A patient without a dated contact keeps an unknown end.
    SELECT
        patient.patient_id,
        placed.last_contact_date,
        placed.last_contact_date_precision,
        CASE WHEN patient.vital_status = 'dead' AND patient.death_date IS NOT NULL THEN patient.death_date
             WHEN placed.last_contact_date IS NOT NULL THEN greatest(placed.last_contact_date, placed.seen_on)
             END AS follow_up_end_date
    FROM core.patient AS patient
    LEFT JOIN (
        SELECT
            last_contact.patient_id,
            last_contact.precision AS last_contact_date_precision,
            placed_date(last_contact.first_day, last_contact.precision, alive.alive_on,
                        least(last_contact.exported_on, last_contact.death_date)) AS last_contact_date,
            alive.seen_on
        FROM last_contact
        LEFT JOIN alive USING (patient_id)
    ) AS placed USING (patient_id)
),

follow_up_start_bound AS (
    -- What the first diagnosis cannot be after (origin_known_by of mart_functions.sql, as marts.survival bounds its
    -- origins): the last day another diagnosis or a treatment start can be on, on or after the first day of its
    -- period (an earlier one, a date error, bounds nothing), and a relapse or progression dated after that day.
    -- All patients at once: the least day of origin_known() that bounds each; a diagnosis none bounds has no row.
    SELECT first_diagnosis.patient_id, min(known.known_on) AS known_on
    FROM first_diagnosis
    JOIN origin_known() AS known
        ON known.patient_id = first_diagnosis.patient_id
       AND origin_bounded_by(known.known_on, known.is_event, first_diagnosis.diagnosis_date, true)
    GROUP BY first_diagnosis.patient_id
),

follow_up_start AS (
    SELECT
        first_diagnosis.patient_id,
        placed_date(first_diagnosis.diagnosis_date, first_diagnosis.diagnosis_date_precision,
                    birth_first_day(patient.birth_year, patient.birth_month),
                    least(bound.known_on, follow_up_end.follow_up_end_date)) AS follow_up_start_date
    FROM first_diagnosis
    JOIN core.patient AS patient USING (patient_id)
    JOIN follow_up_end USING (patient_id)
    LEFT JOIN follow_up_start_bound AS bound USING (patient_id)
)

SELECT
    patient.patient_id,
    patient.sex,
    CASE WHEN patient.birth_year BETWEEN year(period.earliest) AND year(period.latest)
         THEN patient.birth_year END AS birth_year,
    patient.country,
    first_diagnosis.diagnosis_date AS first_diagnosis_date,
    first_diagnosis.diagnosis_date_precision AS first_diagnosis_date_precision,
    first_diagnosis.event_type AS first_diagnosis_event_type,
    first_diagnosis.age_at_diagnosis_days AS age_at_first_diagnosis_days,
    round(first_diagnosis.age_at_diagnosis_days / 365.25, 1) AS age_at_first_diagnosis_years,
    first_diagnosis.icdo3_morphology,
    first_diagnosis.iccc3_code,
    first_diagnosis.iccc3_group,
    first_diagnosis.iccc3_subgroup,
    first_diagnosis.is_very_rare,
    coalesce(relapses.n_relapses, 0) AS n_relapses,
    patient.n_sources,
    coalesce(sources.sources, []) AS sources,
    coalesce(sources.centres, []) AS centres,
    coalesce(studies.studies, []) AS studies,
    studies.first_enrolment_date,
    patient.vital_status,
    patient.death_date,
    patient.death_date_precision,
    follow_up_end.last_contact_date,
    follow_up_end.last_contact_date_precision,
    follow_up_end.follow_up_end_date,
    follow_up_end.follow_up_end_date - follow_up_start.follow_up_start_date AS follow_up_days,
    round((follow_up_end.follow_up_end_date - follow_up_start.follow_up_start_date) / 365.25, 2) AS follow_up_years
FROM core.patient AS patient
CROSS JOIN plausible_period AS period
LEFT JOIN first_diagnosis USING (patient_id)
LEFT JOIN relapses USING (patient_id)
LEFT JOIN sources USING (patient_id)
LEFT JOIN studies USING (patient_id)
LEFT JOIN follow_up_end USING (patient_id)
LEFT JOIN follow_up_start USING (patient_id)
ORDER BY patient.patient_id;

COMMENT ON TABLE marts.patient_summary IS 'One row per linked patient: demographics, the first diagnosis and its ICCC-3 classification, the sources and studies that know the patient, vital status and follow-up time.';
COMMENT ON COLUMN marts.patient_summary.patient_id IS 'Pseudonymous patient identifier (keyed HMAC-SHA256), the key of core.patient.';
COMMENT ON COLUMN marts.patient_summary.sex IS 'Sex, merged over sources (conflicting sources give unknown). Codes: female / male / undetermined / unknown.';
COMMENT ON COLUMN marts.patient_summary.birth_year IS 'Year of birth (the exact birth date is never stored). Unit: year.';
COMMENT ON COLUMN marts.patient_summary.country IS 'Country of residence. Codes: ISO 3166-1 alpha-2.';
COMMENT ON COLUMN marts.patient_summary.first_diagnosis_date IS 'Date of the first diagnosis event recorded for the patient in any source (the initial diagnosis that must have come first, the earliest last day it can be on; a relapse only before it or without it), as the source gave it: the first day of its period when known only to the month or year (first_diagnosis_date_precision).';
COMMENT ON COLUMN marts.patient_summary.first_diagnosis_date_precision IS 'How much of the first diagnosis date the source gave; month or year: the follow-up starts in the middle of the days it can be on (an analysis may leave such patients out). Codes: day / month / year.';
COMMENT ON COLUMN marts.patient_summary.first_diagnosis_event_type IS 'What the first recorded diagnosis event is: the initial diagnosis, or a relapse when the sources know only that. Codes: initial / relapse / progression.';
COMMENT ON COLUMN marts.patient_summary.age_at_first_diagnosis_days IS 'Age at the first recorded diagnosis, from the birth date inside harmonise. Unit: days.';
COMMENT ON COLUMN marts.patient_summary.age_at_first_diagnosis_years IS 'Age at the first recorded diagnosis, age_at_first_diagnosis_days / 365.25 rounded to 0.1. Unit: years.';
COMMENT ON COLUMN marts.patient_summary.icdo3_morphology IS 'ICD-O-3 morphology of the first diagnosis, 4 digits. Codes: ICD-O-3.';
COMMENT ON COLUMN marts.patient_summary.iccc3_code IS 'ICCC-3 main-classification recode of the first diagnosis (IARC 2017), e.g. 011. Codes: ICCC-3 recode.';
COMMENT ON COLUMN marts.patient_summary.iccc3_group IS 'ICCC-3 main group of the first diagnosis, a Roman numeral. Codes: I / II / III / IV / V / VI / VII / VIII / IX / X / XI / XII.';
COMMENT ON COLUMN marts.patient_summary.iccc3_subgroup IS 'ICCC-3 subgroup of the first diagnosis, e.g. I(a): the patient''s disease in every mart. Codes: ICCC-3 subgroup.';
COMMENT ON COLUMN marts.patient_summary.is_very_rare IS 'The first diagnosis is a very rare tumour (incidence below 2 per million children per year).';
COMMENT ON COLUMN marts.patient_summary.n_relapses IS 'Number of relapse or progression diagnosis events recorded in any source. Unit: events.';
COMMENT ON COLUMN marts.patient_summary.n_sources IS 'Number of sources that know the patient. Unit: sources.';
COMMENT ON COLUMN marts.patient_summary.sources IS 'The sources that know the patient, sorted. Codes: source_id of sources/*.yaml.';
COMMENT ON COLUMN marts.patient_summary.centres IS 'The centres that reported the patient, sorted.';
COMMENT ON COLUMN marts.patient_summary.studies IS 'The studies and registries the patient is enrolled in, sorted. Codes: SACHA / ILTB / TREP / ESMART / CRIZOTINIB.';
COMMENT ON COLUMN marts.patient_summary.first_enrolment_date IS 'Date of the patient''s first enrolment in any study or registry.';
COMMENT ON COLUMN marts.patient_summary.vital_status IS 'Vital status at the last contact; dead if any source says so. Codes: alive / dead / lost / opted_out / unknown.';
COMMENT ON COLUMN marts.patient_summary.death_date IS 'Date of death (core.patient): the earliest any source gives; one known only to its month or year is placed in the middle of that period, after the last date the patient was alive on.';
COMMENT ON COLUMN marts.patient_summary.death_date_precision IS 'How much of the death date the source gave; month or year: death_date is placed in that period. Codes: day / month / year.';
COMMENT ON COLUMN marts.patient_summary.last_contact_date IS 'Latest follow-up contact in any source; one known only to its month or year is placed in the middle of the days it can be on (last_contact_date_precision): not before a diagnosis, treatment start or response assessment dated later in that period, not after the export it is in now nor the death.';
COMMENT ON COLUMN marts.patient_summary.last_contact_date_precision IS 'How much of the last contact date the source gave; month or year: last_contact_date is placed in that period. Codes: day / month / year.';
COMMENT ON COLUMN marts.patient_summary.follow_up_end_date IS 'End of follow-up: the death date for a dead patient, else the last day the patient is known alive: the last contact, or a diagnosis, treatment start or response assessment dated after it (there too a death without a date); unknown without a dated contact.';
COMMENT ON COLUMN marts.patient_summary.follow_up_days IS 'Follow-up time from the first diagnosis (one known only to its month or year placed in the middle of the days it can be on: not before the birth, not after the last day another diagnosis or a treatment start can be on, a relapse or progression dated after its first day, nor the end of follow-up) to follow_up_end_date. Unit: days.';
COMMENT ON COLUMN marts.patient_summary.follow_up_years IS 'Follow-up time, follow_up_days / 365.25 rounded to 0.01. Unit: years.';
