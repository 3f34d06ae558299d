-- marts.survival: one row per patient (core.patient) x origin: the per-patient times behind the
-- Kaplan-Meier estimates (marts.survival_km and marts.survival_landmark, computed from this table
-- by etl/load/survival.py when the marts are built).
--
-- Origins (time zero)
--   relapse    the patient's first relapse or progression diagnosis in any source: the
--              population of the relapsed/refractory registries; patients who never relapsed
--              have no row for it.
--   enrolment  the patient's first enrolment in any study or registry.
--   recommendation  the board's recommendation date of the patient's first submission in the
--              comparison of marts.board_advice (advice_group followed or not_followed): the
--              group is fixed at time zero's submission, so no one is credited the time before
--              the advice existed (immortal time). A patient who died before that recommendation
--              has no row (not at risk when the advice was given).
-- Endpoints
--   OS   overall survival: event = death, at the death date (the last contact if the death date
--        is unknown; one known only to its month or year placed in its period by core.patient);
--        otherwise censored at the last contact.
--   EFS  event-free survival: event = the first of a relapse or progression diagnosis, a
--        follow-up contact with disease_status progression, or death, strictly after the origin;
--        otherwise censored at the last contact.
--   A time is NULL (and the patient left out of the estimates) when its end date is unknown or
--   before the origin, which only a date error in a source can cause.
-- Groups: ICCC-3 main group of the first diagnosis; for the origin recommendation only, the
--   advice group of that submission (followed / not_followed; NULL for the other origins, whose
--   time zero comes before any advice and would give the followed group immortal time).

CREATE OR REPLACE TABLE marts.survival AS
WITH advice AS (
    -- The comparable board submissions; a patient's first one is the origin recommendation.
    SELECT DISTINCT patient_id, recommendation_date, recommendation_date_precision, advice_group
    FROM marts.board_advice
    WHERE advice_group IN ('followed', 'not_followed') AND recommendation_date IS NOT NULL
),

first_advice AS (
    SELECT patient_id, recommendation_date, advice_group
    FROM advice
    QUALIFY row_number() OVER (PARTITION BY patient_id ORDER BY recommendation_date, advice_group) = 1
),

origin AS (
    -- A partial date is the first day of its period: of equal dates, the most precise gives the precision.
    SELECT patient_id, 'relapse' AS origin, min(diagnosis_date) AS origin_date,
           arg_min(coalesce(diagnosis_date_precision, 'day'),
                   (diagnosis_date, coalesce(diagnosis_date_precision, 'day'))) AS origin_date_precision
    FROM core.diagnosis
    WHERE event_type IN ('relapse', 'progression') AND diagnosis_date IS NOT NULL
    GROUP BY patient_id
    UNION ALL
    SELECT patient_id, 'enrolment' AS origin, min(enrolment_date) AS origin_date,
           arg_min(coalesce(enrolment_date_precision, 'day'),
                   (enrolment_date, coalesce(enrolment_date_precision, 'day'))) AS origin_date_precision
    FROM core.study_enrolment
    WHERE enrolment_date IS NOT NULL
    GROUP BY patient_id
    UNION ALL
    SELECT patient_id, 'recommendation' AS origin, min(recommendation_date) AS origin_date,
           arg_min(coalesce(recommendation_date_precision, 'day'),
                   (recommendation_date, coalesce(recommendation_date_precision, 'day'))) AS origin_date_precision
    FROM advice
    GROUP BY patient_id
),

death AS (
    SELECT
        patient_id,
        coalesce(vital_status = 'dead', false) AS is_dead,
        CASE WHEN vital_status = 'dead' THEN coalesce(death_date, last_contact_date) END AS death_date,
        last_contact_date
    FROM core.patient
),

efs_event AS (
    SELECT
        patient_id,
        diagnosis_date AS event_date,
        event_type,
        CASE event_type WHEN 'relapse' THEN 0 ELSE 1 END AS event_rank
    FROM core.diagnosis
    WHERE event_type IN ('relapse', 'progression') AND diagnosis_date IS NOT NULL
    UNION ALL
    SELECT patient_id, contact_date AS event_date, 'progression' AS event_type, 1 AS event_rank
    FROM core.follow_up
    WHERE disease_status = 'progression' AND contact_date IS NOT NULL
),

first_efs_event AS (
    -- The first event strictly after the origin; death counts whenever it happened.
    SELECT origin.patient_id, origin.origin, candidate.event_date, candidate.event_type
    FROM origin
    JOIN (
        SELECT patient_id, event_date, event_type, event_rank FROM efs_event
        UNION ALL
        SELECT patient_id, death_date AS event_date, 'death' AS event_type, 2 AS event_rank
        FROM death
        WHERE is_dead
    ) AS candidate
        ON candidate.patient_id = origin.patient_id
       AND (candidate.event_type = 'death' OR candidate.event_date > origin.origin_date)
    QUALIFY row_number() OVER (
        PARTITION BY origin.patient_id, origin.origin
        ORDER BY candidate.event_date NULLS LAST, candidate.event_rank
    ) = 1
),

timed AS (
    SELECT
        origin.patient_id,
        origin.origin,
        origin.origin_date,
        origin.origin_date_precision,
        coalesce(patient.iccc3_group, 'unknown') AS iccc3_group,
        CASE WHEN origin.origin = 'recommendation' THEN first_advice.advice_group END AS advice_group,
        death.is_dead AS os_event,
        CASE WHEN death.is_dead THEN death.death_date ELSE death.last_contact_date END AS os_end_date,
        first_efs_event.event_type IS NOT NULL AS efs_event,
        first_efs_event.event_type AS efs_event_type,
        CASE WHEN first_efs_event.event_type IS NOT NULL THEN first_efs_event.event_date
             ELSE death.last_contact_date END AS efs_end_date
    FROM origin
    JOIN death USING (patient_id)
    LEFT JOIN marts.patient_summary AS patient USING (patient_id)
    LEFT JOIN first_advice USING (patient_id)
    LEFT JOIN first_efs_event USING (patient_id, origin)
    -- Dead before the advice: never at risk in the comparison.
    WHERE NOT (origin.origin = 'recommendation' AND death.is_dead AND coalesce(death.death_date < origin.origin_date, false))
)

SELECT
    patient_id,
    origin,
    origin_date,
    origin_date_precision,
    iccc3_group,
    advice_group,
    os_event,
    os_end_date,
    CASE WHEN os_end_date >= origin_date THEN os_end_date - origin_date END AS os_days,
    efs_event,
    efs_event_type,
    efs_end_date,
    CASE WHEN efs_end_date >= origin_date THEN efs_end_date - origin_date END AS efs_days
FROM timed
ORDER BY origin, patient_id;

COMMENT ON TABLE marts.survival IS 'One row per patient and origin (first relapse, first enrolment): overall and event-free survival times and events, the input of the Kaplan-Meier estimates. Deaths, relapses and progressions reported only by records held back in dq.quarantine are missing: marts.held_back_endpoints lists them.';
COMMENT ON COLUMN marts.survival.patient_id IS 'Pseudonymous patient identifier.';
COMMENT ON COLUMN marts.survival.origin IS 'Time zero: the first relapse or progression diagnosis, the first enrolment in any study, or the recommendation of the first board submission in the advice comparison. Codes: relapse / enrolment / recommendation.';
COMMENT ON COLUMN marts.survival.origin_date IS 'Date of the origin; one a source gives only to the month or year is the first day of its period (origin_date_precision).';
COMMENT ON COLUMN marts.survival.origin_date_precision IS 'How much of the origin date the source gave: a time from an origin known only to its month or year may be longer than it was by up to that period (an analysis may leave such rows out). Codes: day / month / year.';
COMMENT ON COLUMN marts.survival.iccc3_group IS 'ICCC-3 main group of the first diagnosis; unknown when none is recorded. Codes: I / II / III / IV / V / VI / VII / VIII / IX / X / XI / XII / unknown.';
COMMENT ON COLUMN marts.survival.advice_group IS 'Origin recommendation only: whether that submission''s priority-1 targeted advice was followed, or no advice of it was (control); NULL for the other origins. Codes: followed / not_followed.';
COMMENT ON COLUMN marts.survival.os_event IS 'The patient died (OS event); false: censored at the last contact.';
COMMENT ON COLUMN marts.survival.os_end_date IS 'Death date if the patient died (core.patient: one known only to its month or year is placed in that period; the last contact if the death date is unknown), else the last contact.';
COMMENT ON COLUMN marts.survival.os_days IS 'Overall survival time from the origin to os_end_date; NULL if unknown or before the origin. Unit: days.';
COMMENT ON COLUMN marts.survival.efs_event IS 'An EFS event happened after the origin: relapse, progression or death; false: censored at the last contact.';
COMMENT ON COLUMN marts.survival.efs_event_type IS 'The first event after the origin. Codes: relapse / progression / death.';
COMMENT ON COLUMN marts.survival.efs_end_date IS 'Date of the first event after the origin, else the last contact.';
COMMENT ON COLUMN marts.survival.efs_days IS 'Event-free survival time from the origin to efs_end_date; NULL if unknown or before the origin. Unit: days.';
