-- marts.registry_activity: one row per study x centre x country x registration year.
--
-- Unit: a registration, one enrolment of a patient in a study or registry (core.study_enrolment).
-- Definitions
--   country: the patient's country of residence (core.patient), which for cross-border care can
--     differ from the centre's.
--   time from diagnosis to registration: from the latest diagnosis event that the same source
--     records on or before the registration date (for a registry the initial diagnosis, for a
--     relapse registry the relapse that led to enrolment) to the registration date. A date known
--     only to its month or year (*_precision) is placed in the middle of the days it can be on
--     (placed_date of mart_functions.sql): a diagnosis not after the registration's last possible
--     day, a registration not before the diagnosis's first; a diagnosis counts unless surely after
--     the registration ("2021" is before a registration of 15 June 2021, on 24 March: 83 days).
--   quartiles are continuous (linear interpolation), over registrations with that time known.
--   a date that cannot be true (before 1900 or after the latest export loaded) counts as unknown:
--     an enrolment so dated is counted with registration_year NULL, like one without a date, and
--     a diagnosis so dated times no registration. The rules XT-DATE-NOT-BEFORE-1900 and
--     XT-DATE-NOT-AFTER-EXPORT hold such records back unless a source switches them off; the
--     mart shows no impossible year even then.

CREATE OR REPLACE TABLE marts.registry_activity AS
WITH plausible_period AS (
    SELECT DATE '1900-01-01' AS earliest, coalesce(max(exported_on), current_date) AS latest
    FROM meta.source_file
    WHERE status = 'loaded'
),

enrolment_dated AS (  -- core.study_enrolment with its date when that can be true, else NULL
    SELECT
        enrolment.* REPLACE (
            CASE WHEN enrolment.enrolment_date BETWEEN period.earliest AND period.latest
                 THEN enrolment.enrolment_date END AS enrolment_date)
    FROM core.study_enrolment AS enrolment
    CROSS JOIN plausible_period AS period
),

registration AS (
    SELECT
        enrolment.enrolment_id,
        enrolment.patient_id,
        enrolment.source_id,
        enrolment.study_id,
        coalesce(enrolment.centre_id, 'unknown') AS centre_id,
        coalesce(patient.country, 'unknown') AS country,
        enrolment.enrolment_date,
        enrolment.enrolment_date_precision,
        year(enrolment.enrolment_date) AS registration_year
    FROM enrolment_dated AS enrolment
    LEFT JOIN core.patient AS patient USING (patient_id)
),

registration_bounded AS (  -- the last day each registration can be on
    SELECT registration.*,
           least(period_end(enrolment_date, coalesce(enrolment_date_precision, 'day')), period.latest) AS last_day
    FROM registration
    CROSS JOIN plausible_period AS period
),

diagnosis_before AS (  -- the latest diagnosis not surely after the registration, placed not after it
    SELECT enrolment_id, first_day, placed_on
    FROM (
        SELECT registration.enrolment_id, diagnosis.diagnosis_id, diagnosis.diagnosis_date AS first_day,
               placed_date(diagnosis.diagnosis_date, diagnosis.diagnosis_date_precision, NULL, registration.last_day)
                   AS placed_on
        FROM registration_bounded AS registration
        CROSS JOIN plausible_period AS period
        JOIN core.diagnosis AS diagnosis
            ON diagnosis.patient_id = registration.patient_id
           AND diagnosis.source_id = registration.source_id
           AND diagnosis.diagnosis_date BETWEEN period.earliest AND registration.last_day
    )
    QUALIFY row_number() OVER (PARTITION BY enrolment_id ORDER BY placed_on DESC, first_day DESC, diagnosis_id) = 1
),

timed AS (
    SELECT registration.*,
           placed_date(registration.enrolment_date, registration.enrolment_date_precision,
                       diagnosis_before.first_day, registration.last_day)
           - diagnosis_before.placed_on AS days_to_registration
    FROM registration_bounded AS registration
    LEFT JOIN diagnosis_before USING (enrolment_id)
)

SELECT
    study_id,
    centre_id,
    country,
    registration_year,
    count(*) AS n_registrations,
    count(DISTINCT patient_id) AS n_patients,
    count(days_to_registration) AS n_with_diagnosis_date,
    quantile_cont(days_to_registration, 0.25) AS days_to_registration_p25,
    median(days_to_registration) AS days_to_registration_median,
    quantile_cont(days_to_registration, 0.75) AS days_to_registration_p75
FROM timed
GROUP BY ALL
ORDER BY study_id, centre_id, country, registration_year;

COMMENT ON TABLE marts.registry_activity IS 'Patients registered per study, centre, country and year, and the time from diagnosis to registration.';
COMMENT ON COLUMN marts.registry_activity.study_id IS 'Study or registry. Codes: SACHA / ILTB / TREP / ESMART / CRIZOTINIB.';
COMMENT ON COLUMN marts.registry_activity.centre_id IS 'Registering centre as the source codes it; unknown when not given.';
COMMENT ON COLUMN marts.registry_activity.country IS 'The patients'' country of residence; unknown when not given. Codes: ISO 3166-1 alpha-2.';
COMMENT ON COLUMN marts.registry_activity.registration_year IS 'Calendar year of the registration (enrolment date). Unit: year.';
COMMENT ON COLUMN marts.registry_activity.n_registrations IS 'Registrations (enrolments). Unit: registrations.';
COMMENT ON COLUMN marts.registry_activity.n_patients IS 'Distinct patients registered. Unit: patients.';
COMMENT ON COLUMN marts.registry_activity.n_with_diagnosis_date IS 'Registrations whose time from diagnosis is known (a diagnosis of the same source not surely after the registration). Unit: registrations.';
COMMENT ON COLUMN marts.registry_activity.days_to_registration_p25 IS 'First quartile of the time from diagnosis to registration. Unit: days.';
COMMENT ON COLUMN marts.registry_activity.days_to_registration_median IS 'Median time from diagnosis to registration. Unit: days.';
COMMENT ON COLUMN marts.registry_activity.days_to_registration_p75 IS 'Third quartile of the time from diagnosis to registration. Unit: days.';
