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
--   diagnosis  the patient's first malignant initial diagnosis (behaviour /3; is_malignant of
--              mart_functions.sql) in any source: overall and event-free survival from diagnosis, the measure
--              of population-based cancer registries (EUROCARE). Only for patients a population-based registry
--              registered (an initial diagnosis from a source with the parameter population_based, as
--              marts.incidence counts cases): a registry registers every case at its diagnosis, whereas a study
--              enrols after it (at relapse, on a trial), so its patients would count only if they lived to enrol
--              (left truncation: survival from the diagnosis too long). A diagnosis known from a death certificate
--              only (basis of diagnosis 0) is not an origin (its survival time is not known; EUROCARE leaves such
--              cases out). A patient who died before the first day the diagnosis can be on has no row (a diagnosis
--              at autopsy, or a date error). marts.left_out counts each patient left out, and why.
--   Of several dates (sources, records), the one that must have come first (came_first of mart_functions.sql):
--   the earliest last day it can be, of equal ones the most precise (as core.patient chooses among deaths, and
--   marts.patient_summary its first diagnosis: where that is malignant, registered, dated and not from a death
--   certificate only, it is this origin diagnosis). One known only to its month or year
--   is placed in the middle of the days it can be on (placed_date of mart_functions.sql, the mid-month /
--   mid-year imputation of cancer registries): not before the first day the birth can be on, not after the
--   end of follow-up (marts.patient_summary.follow_up_end_date: the death as core.patient places it, else the last
--   day the patient is known alive, the last contact or a later diagnosis, treatment start or response assessment,
--   each placed in its period), so no time is negative for want of a day; and not after a relapse or progression (efs_event of
--   mart_functions.sql) dated after the first day of its period. Of an origin known to the month or year and
--   such an event in that period, the data cannot say which came first: the event counts, at a positive time
--   (half the days from the period's first day to it), the conservative reading trial analyses take of a
--   partial date (an event in the month of randomisation counts); placed after it, the event was lost and the
--   patient censored later. An event dated on the period's first day (or known only to that month or year, as
--   the same relapse from another source) does not move the origin and, not after it, is no event, as one on the
--   day of an origin known to the day is not. The diagnosis is not placed after the last day a diagnosis or a
--   treatment start can be on either, as marts.patient_summary starts its follow-up from the first diagnosis.
--   origin_date_precision keeps what the source gave: an analysis may leave such rows out.
-- Endpoints
--   OS   overall survival: event = death, at the death date (the end of follow-up if the death date
--        is unknown; one known only to its month or year placed in its period by core.patient);
--        otherwise censored at the end of follow-up (marts.patient_summary's: the last day the patient is known alive,
--        the last contact or a later diagnosis, treatment start or response assessment, one known only to its month
--        or year placed in its period as the last contact is, so a relapse the patient lived through too).
--   EFS  event-free survival: event = the first of a relapse or progression diagnosis, a
--        follow-up contact with disease_status progression, or death, strictly after the origin (a relapse or
--        progression whose period's first day is after it: one known only to a month or year that holds the
--        origin may be the origin relapse itself, or the relapse a study enrolled for, and is no event);
--        otherwise censored at the end of follow-up, as OS (marts.patient_summary's last contact: one known only to its
--        month or year placed in the middle of its period, not before a diagnosis, treatment start or response
--        assessment dated later in it, not after the export it is in now; its first day censored up to a year early).
--        A relapse or progression known only to its month or year is placed as an origin is: the first event is
--        the one whose period starts first, in the middle of the days from that first day to the earliest last
--        day any event after the origin can be on (its period's, not after the death nor the export its record
--        is in now, export_now(): "2026" in an export of 1 June 2026 happened by 1 June), and not after the end of
--        follow-up, as an origin: "2022" beside a progression seen on 15 March 2022 is placed within 1 January to
--        15 March, "2021" beside a last contact on 30 April 2021 within 1 January to 30 April (as the relapse origin
--        is: not after the OS censoring). Its first day would end event-free survival up to a year early. It stays
--        after the origin, which is placed before it.
--        Reading the export days (meta.source_file), this mart is built again on every publish; its estimates
--        (marts.survival_km, marts.survival_landmark) only when its rows changed.
--   A time is NULL (and the patient left out of the estimates) when its end date is unknown (no contact
--   dated, nor a death) or before the origin (a date error in a source); marts.left_out counts each.
-- Groups: ICCC-3 main group of the first diagnosis (marts.patient_summary's, for every origin); for the origin
--   recommendation only, the advice group of that submission (followed / not_followed; NULL for the other origins, whose
--   time zero comes before any advice and would give the followed group immortal time).

CREATE OR REPLACE TABLE marts.survival AS
WITH advice AS (
    -- The comparable board submissions; a patient's first one is the origin recommendation.
    SELECT DISTINCT patient_id, recommendation_date, recommendation_date_precision, advice_group
    FROM marts.board_advice
    WHERE advice_group IN ('followed', 'not_followed') AND recommendation_date IS NOT NULL
),

registered AS (
    -- Patients a population-based registry registered, at their diagnosis: the only ones followed from it.
    SELECT DISTINCT diagnosis.patient_id
    FROM core.diagnosis AS diagnosis
    JOIN stage.source_params AS params ON params.source_id = diagnosis.source_id AND params.population_based
    WHERE diagnosis.event_type = 'initial'
),

origin_given AS (
    -- Every date that can be a patient's origin, as its source gave it (a partial date is the first day of its period).
    SELECT patient_id, 'relapse' AS origin, diagnosis_date AS first_day,
           coalesce(diagnosis_date_precision, 'day') AS precision, NULL::VARCHAR AS advice_group
    FROM core.diagnosis
    WHERE event_type IN ('relapse', 'progression') AND diagnosis_date IS NOT NULL
    UNION ALL
    SELECT patient_id, 'enrolment', enrolment_date, coalesce(enrolment_date_precision, 'day'), NULL
    FROM core.study_enrolment
    WHERE enrolment_date IS NOT NULL
    UNION ALL
    SELECT patient_id, 'recommendation', recommendation_date, coalesce(recommendation_date_precision, 'day'),
           advice_group
    FROM advice
    UNION ALL
    SELECT patient_id, 'diagnosis', diagnosis_date, coalesce(diagnosis_date_precision, 'day'), NULL
    FROM core.diagnosis
    WHERE event_type = 'initial' AND is_malignant(icdo3_behaviour) AND diagnosis_date IS NOT NULL
      AND coalesce(basis_of_diagnosis, '') <> '0'  -- a death certificate only: no survival time
      AND patient_id IN (SELECT patient_id FROM registered)
),

first_origin AS (
    -- The date that must have come first (came_first of mart_functions.sql: the earliest last day it can be; of
    -- equal ones, the most precise; as marts.patient_summary chooses the first diagnosis): a relapse "in 2021" and
    -- one on 10 March 2021 make a first relapse on 10 March. For the recommendation, its submission's advice group
    -- (of equal dates, followed).
    SELECT
        patient_id,
        origin,
        arg_min({'first_day': first_day, 'precision': precision, 'advice_group': advice_group},
                (came_first(first_day, precision), advice_group)) AS given
    FROM origin_given
    GROUP BY patient_id, origin
),

vital AS (
    -- Vital status, the death date, and the end of follow-up the times run to (marts.patient_summary's: a last contact
    -- known only to its month or year placed in its period); the first day the birth can be on.
    SELECT
        patient.patient_id,
        coalesce(patient.vital_status = 'dead', false) AS is_dead,
        CASE WHEN patient.vital_status = 'dead' THEN summary.follow_up_end_date END AS death_date,
        summary.last_contact_date,
        summary.follow_up_end_date,
        birth_first_day(patient.birth_year, patient.birth_month) AS birth_first_day
    FROM core.patient AS patient
    JOIN marts.patient_summary AS summary USING (patient_id)
),

origin_bound AS (
    -- What an origin cannot be after (origin_known_by of mart_functions.sql): a relapse or progression dated after
    -- the first day of its period (the event then follows it, and counts); the diagnosis, also the last day another
    -- diagnosis or a treatment start can be on, on or after that first day (as marts.patient_summary: an earlier
    -- one, a date error, bounds nothing).
    -- All origins at once: the least day of origin_known() that bounds each; an origin none bounds has no row.
    SELECT first_origin.patient_id, first_origin.origin, min(known.known_on) AS known_on
    FROM first_origin
    JOIN origin_known() AS known
        ON known.patient_id = first_origin.patient_id
       AND origin_bounded_by(known.known_on, known.is_event, first_origin.given.first_day,
                             first_origin.origin = 'diagnosis')
    GROUP BY first_origin.patient_id, first_origin.origin
),

origin AS (
    -- An origin known to its month or year is placed in the middle of the days it can be on (placed_date):
    -- not before the birth, not after the end of follow-up (vital.follow_up_end_date), nor its bound
    -- (origin_bound; least skips a NULL).
    SELECT
        first_origin.patient_id,
        first_origin.origin,
        placed_date(first_origin.given.first_day, first_origin.given.precision, vital.birth_first_day,
                    least(bound.known_on, vital.follow_up_end_date)) AS origin_date,
        first_origin.given.first_day AS origin_first_day,
        first_origin.given.precision AS origin_date_precision,
        first_origin.given.advice_group AS advice_group
    FROM first_origin
    JOIN vital USING (patient_id)
    LEFT JOIN origin_bound AS bound USING (patient_id, origin)
),

efs_candidate AS (
    -- Every EFS event with the last day it can be on: its period's, not after the death nor the export its record is in
    -- now (export_now(), as core.patient bounds a death: a row carried over names the export that first gave it, a
    -- fresh load the later; least skips a NULL, an export not dated; placed_last_day keeps its first day when the death
    -- or the export predates it, a date error); a death on its day.
    SELECT event.patient_id, event.event_date, event.event_date_precision, event.event_type, event.event_rank,
           placed_last_day(event.event_date, event.event_date_precision,
                           least(vital.death_date, export.exported_on)) AS last_day
    FROM efs_event() AS event
    JOIN vital USING (patient_id)
    LEFT JOIN export_now() AS export USING (source_id, source_file_sha256)
    UNION ALL
    SELECT patient_id, death_date, 'day', 'death', 2, death_date
    FROM vital
    WHERE is_dead
),

first_efs_event AS (
    -- The first event strictly after the origin (its period's first day after it: one whose period holds the origin
    -- may be the origin itself, or what a study enrolled for); death counts whenever it happened. It is the one whose
    -- period starts first (of one day, the more precise, then by event_rank), placed in the middle of the days from
    -- that first day to the earliest last day any of these events can be on (placed_date; in timed, not after the
    -- end of follow-up either, as an origin is, so no censoring of OS comes before it): the first event happened
    -- between them. So it stays after the origin, as the origin is placed before it (origin_bound).
    SELECT
        origin.patient_id,
        origin.origin,
        arg_min({'event_date': candidate.event_date, 'precision': candidate.event_date_precision,
                 'event_type': candidate.event_type},
                (candidate.event_date IS NULL, candidate.event_date, candidate.last_day, candidate.event_rank)) AS first,
        min(candidate.last_day) AS known_by
    FROM origin
    JOIN efs_candidate AS candidate
        ON candidate.patient_id = origin.patient_id
       AND (candidate.event_type = 'death' OR candidate.event_date > origin.origin_date)
    GROUP BY origin.patient_id, origin.origin
),

timed AS (
    SELECT
        origin.patient_id,
        origin.origin,
        origin.origin_date,
        origin.origin_date_precision,
        coalesce(patient.iccc3_group, 'unknown') AS iccc3_group,
        CASE WHEN origin.origin = 'recommendation' THEN origin.advice_group END AS advice_group,
        vital.is_dead AS os_event,
        vital.follow_up_end_date AS os_end_date,
        first_efs_event.first.event_type IS NOT NULL AS efs_event,
        first_efs_event.first.event_type AS efs_event_type,
        CASE WHEN first_efs_event.first.event_type IS NOT NULL
             THEN placed_date(first_efs_event.first.event_date, first_efs_event.first.precision, NULL,
                              least(first_efs_event.known_by, vital.follow_up_end_date))
             ELSE vital.follow_up_end_date END AS efs_end_date
    FROM origin
    JOIN vital USING (patient_id)
    LEFT JOIN marts.patient_summary AS patient USING (patient_id)
    LEFT JOIN first_efs_event USING (patient_id, origin)
    -- Dead before the advice, or the diagnosis (before the first day it can be on): never at risk from it.
    WHERE NOT (origin.origin IN ('recommendation', 'diagnosis') AND vital.is_dead
               AND coalesce(vital.death_date < origin.origin_first_day, false))
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

COMMENT ON TABLE marts.survival IS 'One row per patient and origin (first relapse, first enrolment, recommendation, first malignant initial diagnosis): overall and event-free survival times and events, the input of the Kaplan-Meier estimates. Deaths, relapses and progressions reported only by records held back in dq.quarantine are missing: marts.held_back_endpoints lists them.';
COMMENT ON COLUMN marts.survival.patient_id IS 'Pseudonymous patient identifier.';
COMMENT ON COLUMN marts.survival.origin IS 'Time zero: the first relapse or progression diagnosis, the first enrolment in any study, the recommendation of the first board submission in the advice comparison, or the first malignant initial diagnosis of a patient a population-based registry registered. Codes: relapse / enrolment / recommendation / diagnosis.';
COMMENT ON COLUMN marts.survival.origin_date IS 'Date of the origin; one a source gives only to the month or year is placed in the middle of the days it can be on (origin_date_precision): not before the birth, not after the end of follow-up (follow_up_end_date of marts.patient_summary), nor after a relapse or progression dated after the first day of its period (a diagnosis not after the last day another diagnosis or a treatment start can be on either).';
COMMENT ON COLUMN marts.survival.origin_date_precision IS 'How much of the origin date the source gave: a time from an origin known only to its month or year is from the middle of the days it can be on, and may be off by up to half that period (an analysis may leave such rows out). Codes: day / month / year.';
COMMENT ON COLUMN marts.survival.iccc3_group IS 'ICCC-3 main group of the first diagnosis; unknown when none is recorded. Codes: I / II / III / IV / V / VI / VII / VIII / IX / X / XI / XII / unknown.';
COMMENT ON COLUMN marts.survival.advice_group IS 'Origin recommendation only: whether that submission''s priority-1 targeted advice was followed, or no advice of it was (control); NULL for the other origins. Codes: followed / not_followed.';
COMMENT ON COLUMN marts.survival.os_event IS 'The patient died (OS event); false: censored at the end of follow-up (os_end_date).';
COMMENT ON COLUMN marts.survival.os_end_date IS 'Death date if the patient died (core.patient: one known only to its month or year is placed in that period; the end of follow-up if the death date is unknown), else the end of follow-up (marts.patient_summary.follow_up_end_date: the last day known alive).';
COMMENT ON COLUMN marts.survival.os_days IS 'Overall survival time from the origin to os_end_date; NULL if unknown or before the origin. Unit: days.';
COMMENT ON COLUMN marts.survival.efs_event IS 'An EFS event happened after the origin: relapse, progression or death; false: censored at the end of follow-up (efs_end_date).';
COMMENT ON COLUMN marts.survival.efs_event_type IS 'The first event after the origin. Codes: relapse / progression / death.';
COMMENT ON COLUMN marts.survival.efs_end_date IS 'Date of the first event after the origin (a relapse or progression known only to its month or year placed in the middle of the days it can be on, not after the death, the export it is in now, another event known by an earlier day, nor the end of follow-up), else the end of follow-up (marts.patient_summary.follow_up_end_date: the last contact or a later diagnosis, treatment start or response assessment, one known only to its month or year placed in that period).';
COMMENT ON COLUMN marts.survival.efs_days IS 'Event-free survival time from the origin to efs_end_date; NULL if unknown or before the origin. Unit: days.';
