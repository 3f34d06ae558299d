-- Functions the marts in warehouse/marts/ share, created as temporary macros on the connection
-- that builds them (etl/load/marts.py), so the published warehouse holds none of them; after those of
-- warehouse/rule_functions.sql (period_end, completed_years), which they and the marts read.
--
-- wilson_lower(p, n) / wilson_upper(p, n): the Wilson score 95% confidence interval of a
-- proportion p of n (z = 1.959963984540054, the 97.5th percentile of the normal distribution).
-- Unlike p +/- z * se it stays within 0-1 and is usable for the small groups of rare tumours.
-- NULL when n is 0 or NULL. Exactly 0 at p = 0 and 1 at p = 1, as the formula is (rounding gave
-- -1.9e-17 in a published CSV).
CREATE OR REPLACE TEMP MACRO wilson_lower(p, n) AS CASE
    WHEN p = 0 AND n > 0 THEN 0.0
    WHEN n > 0 AND p IS NOT NULL THEN greatest(0.0,  -- greatest and least skip a NULL
    (p + 1.959963984540054 * 1.959963984540054 / (2 * n)
       - 1.959963984540054 * sqrt(p * (1 - p) / n + 1.959963984540054 * 1.959963984540054 / (4 * n * n)))
    / (1 + 1.959963984540054 * 1.959963984540054 / n)) END;
CREATE OR REPLACE TEMP MACRO wilson_upper(p, n) AS CASE
    WHEN p = 1 AND n > 0 THEN 1.0
    WHEN n > 0 AND p IS NOT NULL THEN least(1.0,
    (p + 1.959963984540054 * 1.959963984540054 / (2 * n)
       + 1.959963984540054 * sqrt(p * (1 - p) / n + 1.959963984540054 * 1.959963984540054 / (4 * n * n)))
    / (1 + 1.959963984540054 * 1.959963984540054 / n)) END;

-- response_rank(response): the order of responses, best first, by which a line's best overall
-- response is chosen when sources or treatments of the line give several: CR, CRi, MLFS, PR (the
-- RECIST and leukaemia responses, complete before partial), SD, NR, PD, then NE and a missing response
-- (not evaluable: chosen only when nothing else was assessed).
CREATE OR REPLACE TEMP MACRO response_rank(response) AS
    coalesce(list_position(['CR', 'CRi', 'MLFS', 'PR', 'SD', 'NR', 'PD'], response), 8);

-- not_evaluable(response): NE or missing, the last of response_rank's order.
CREATE OR REPLACE TEMP MACRO not_evaluable(response) AS response_rank(response) = 8;

-- placed_date(first_day, given, not_before, not_after): a date given (its precision: day / month / year;
-- stored as the first day of its period) placed in the middle of the days it can be on, as core.patient
-- places a death (warehouse/patient.sql) and as cancer registries impute an incidence date known to the
-- month or year (mid-month, mid-year, within what else is known of the patient, e.g. SEER's and
-- EUROCARE's rules): not before not_before (the first day the birth can be on) when that falls in the
-- period, and not after not_after (e.g. the end of follow-up) unless that is before the period (a date
-- error, left to show as a negative time). A day stays its day; the 16th of a 31-day month, the 15th of a
-- 30-day one; 2 July of a year (1 July of a leap year). greatest and least skip a NULL bound.
CREATE OR REPLACE TEMP MACRO placed_last_day(first_day, given, not_after) AS
    greatest(first_day, least(period_end(first_day, coalesce(given, 'day')), not_after));
CREATE OR REPLACE TEMP MACRO placed_first_day(first_day, given, not_before, not_after) AS CASE
    WHEN not_before > first_day AND not_before <= placed_last_day(first_day, given, not_after) THEN not_before
    ELSE first_day END;
CREATE OR REPLACE TEMP MACRO placed_date(first_day, given, not_before, not_after) AS
    placed_first_day(first_day, given, not_before, not_after)
    + ((placed_last_day(first_day, given, not_after) - placed_first_day(first_day, given, not_before, not_after))
       // 2)::INTEGER;

-- birth_first_day(birth_year, birth_month): the first day a birth known to its year (and month) can be on;
-- NULL for a year or month no date can have (a data error bounds nothing).
CREATE OR REPLACE TEMP MACRO birth_first_day(birth_year, birth_month) AS CASE
    WHEN birth_year BETWEEN 1 AND 9999 AND coalesce(birth_month, 1) BETWEEN 1 AND 12
    THEN make_date(birth_year, coalesce(birth_month, 1), 1) END;

-- is_malignant(icdo3_behaviour): the ICD-O-3 behaviour of a malignant tumour, /3, as cancer registries count a case
-- (etl/transform/icdo3.py MALIGNANT_BEHAVIOUR). core.diagnosis holds behaviours 0-3 only: harmonise refuses /6 (a
-- metastatic site) and /9 (primary or metastatic uncertain), which describe a specimen, not the primary tumour a
-- registry codes (the record is quarantined, asking for the primary /3), and DIAG-BEHAVIOUR-CODE quarantines any
-- other value. Not malignant: /0 benign, /1 of uncertain behaviour (e.g. an inflammatory myofibroblastic tumour 8825/1,
-- which ICCC-3 classifies here, see etl/transform/iccc3.py), /2 in situ, nor a behaviour not given (never assumed
-- /3: DIAG-BEHAVIOUR-PRESENT asks the centre for it).
CREATE OR REPLACE TEMP MACRO is_malignant(icdo3_behaviour) AS coalesce(icdo3_behaviour = '3', false);

-- precision_rank(given): how much of a date a source gave, most first: 0 day (or not said), 1 month, 2 year.
CREATE OR REPLACE TEMP MACRO precision_rank(given) AS
    CASE coalesce(given, 'day') WHEN 'day' THEN 0 WHEN 'month' THEN 1 ELSE 2 END;

-- came_first(first_day, given): the order in which the marts choose, of dates sources give to the day, month or
-- year (stored as the first day of the period), the one that must have come first: the earliest last day it can
-- be on, of equal ones the most precise, then the earliest first day (as core.patient chooses among deaths).
-- "2021" and 10 March 2021 of one event: 10 March (the event was on or before it); "March 2021" and "2021": March.
CREATE OR REPLACE TEMP MACRO came_first(first_day, given) AS row(
    period_end(first_day, coalesce(given, 'day')),
    precision_rank(given),
    first_day);

-- surely_before(first_day, given, other): a date given to the day, month or year (stored as the first day of its
-- period) is surely before the day other: the last day it can be on is. "March 2022" is not surely before 15 March
-- 2022 (it may be the 31st); a start is "on or after" a recommendation unless surely before it (marts.treatment_line,
-- marts.board_advice). NULL when either date is.
CREATE OR REPLACE TEMP MACRO surely_before(first_day, given, other) AS
    period_end(first_day, coalesce(given, 'day')) < other;

-- Table macros: the rows two marts read alike. Each reads core (incidence_registered() also the sources'
-- parameters, stage.source_params): DuckDB binds a table macro when it is created, so etl/load/marts.py creates
-- them once those tables exist. It counts a table a macro reads as read by every mart that calls it, so a mart built
-- again only when what it reads changed still sees what its macros read.

-- efs_event(): one row per event of event-free survival but death, as given (a date known to its month or year
-- is the first day of its period, event_date_precision says which): a relapse or progression diagnosis, and a
-- follow-up contact with disease status progression; event_rank orders events of one day (relapse before
-- progression; a death, 2, after); the record's source and export file (export_now() gives the export it is in now).
CREATE OR REPLACE TEMP MACRO efs_event() AS TABLE
    SELECT patient_id, diagnosis_date AS event_date, coalesce(diagnosis_date_precision, 'day') AS event_date_precision,
           event_type, CASE event_type WHEN 'relapse' THEN 0 ELSE 1 END AS event_rank, source_id, source_file_sha256
    FROM core.diagnosis
    WHERE event_type IN ('relapse', 'progression') AND diagnosis_date IS NOT NULL
    UNION ALL
    SELECT patient_id, contact_date, coalesce(contact_date_precision, 'day'), 'progression', 1, source_id,
           source_file_sha256
    FROM core.follow_up
    WHERE disease_status = 'progression' AND contact_date IS NOT NULL;

-- alive_on(): the days each patient is known to have been alive and seen on, but for follow-up contacts: a
-- diagnosis (a relapse or progression too), a treatment's start, a response assessment, as given (a date known
-- to its month or year is the first day of its period, the day it is known to be on or after; precision says
-- which), with the record's source and export file (export_now() gives the export it is in now). A last contact
-- known only to its month or year is not placed before them, and one after the days it can be on ends the
-- follow-up where it is placed as the last contact is (marts.patient_summary).
CREATE OR REPLACE TEMP MACRO alive_on() AS TABLE
    SELECT patient_id, diagnosis_date AS alive_on, coalesce(diagnosis_date_precision, 'day') AS precision,
           source_id, source_file_sha256
    FROM core.diagnosis
    WHERE diagnosis_date IS NOT NULL
    UNION ALL
    SELECT patient_id, start_date, coalesce(start_date_precision, 'day'), source_id, source_file_sha256
    FROM core.treatment
    WHERE start_date IS NOT NULL
    UNION ALL
    SELECT patient_id, assessment_date, 'day', source_id, source_file_sha256
    FROM core.response_assessment
    WHERE assessment_date IS NOT NULL;

-- diagnosis_known_by(): the last day each diagnosis and treatment start can be on (one known to the day, its day),
-- which a patient's first diagnosis cannot be after: "2021" beside "March 2021" is placed within January to March.
CREATE OR REPLACE TEMP MACRO diagnosis_known_by() AS TABLE
    SELECT patient_id, period_end(diagnosis_date, coalesce(diagnosis_date_precision, 'day')) AS known_on
    FROM core.diagnosis
    WHERE diagnosis_date IS NOT NULL
    UNION ALL
    SELECT patient_id, period_end(start_date, coalesce(start_date_precision, 'day'))
    FROM core.treatment
    WHERE start_date IS NOT NULL;

-- origin_known(): the days that can bound an origin (origin_bounded_by), per patient: the last day each diagnosis and
-- treatment start can be on (diagnosis_known_by()), and each relapse or progression as given (efs_event(), is_event).
CREATE OR REPLACE TEMP MACRO origin_known() AS TABLE
    SELECT patient_id, known_on, false AS is_event FROM diagnosis_known_by()
    UNION ALL
    SELECT patient_id, event_date, true FROM efs_event();

-- origin_bounded_by(known_on, is_event, first_day, by_diagnoses): a row of origin_known() bounds an origin of its
-- patient whose period starts on first_day (a first diagnosis, relapse, enrolment, ...): a relapse or progression dated
-- after first_day (the event follows the origin), and when by_diagnoses the last day another diagnosis or a treatment
-- start can be on, on or after first_day (an earlier one, a date error, bounds nothing).
CREATE OR REPLACE TEMP MACRO origin_bounded_by(known_on, is_event, first_day, by_diagnoses) AS
    (known_on > first_day OR (known_on = first_day AND NOT is_event)) AND (is_event OR by_diagnoses);

-- origin_known_by(patient, first_day, by_diagnoses): the day an origin is known to have come by, which it is not
-- placed after: the earliest day of origin_known() that bounds it (origin_bounded_by); NULL when none does. One row per
-- call, for one origin. The marts bound all their origins at once instead (marts.patient_summary's first diagnosis,
-- marts.survival's origins, incidence_registered()): origin_known() joined on the patient and origin_bounded_by, the
-- least known_on per origin (a LEFT JOIN: NULL when none is), one grouped join rather than a lateral one per origin
-- (a sixth of marts.survival's time); this one-origin form is the tests' reference for them.
CREATE OR REPLACE TEMP MACRO origin_known_by(patient, first_day, by_diagnoses) AS TABLE
    SELECT min(known.known_on) AS known_on
    FROM origin_known() AS known
    WHERE known.patient_id = patient AND origin_bounded_by(known.known_on, known.is_event, first_day, by_diagnoses);

-- incidence_registered(): one row per initial diagnosis with a date and an ICCC-3 class from a population-based
-- source (the parameter population_based, stage.source_params), with the patient's country as that source registers
-- it (else core.patient's), the diagnosis date as given (the first day of its period, diagnosis_date_precision), the
-- age at diagnosis on it (age_at_diagnosis_days), and what bounds the day one known only to its month or year is
-- placed on, as marts.survival places its origin diagnosis: birth_first_day, and known_on (origin_known_by: another
-- diagnosis or a treatment start, a relapse or progression after it). marts.incidence counts its cases among them, at
-- the age placed_age_years gives, not after the end of follow-up either (marts.patient_summary's, which a table macro
-- cannot read: DuckDB binds it when it is created, before the marts are); marts.left_out those it leaves out.
CREATE OR REPLACE TEMP MACRO incidence_registered() AS TABLE
    WITH registered AS (
        SELECT
            coalesce(registration.country, patient.country) AS country,
            diagnosis.source_id,
            diagnosis.patient_id,
            diagnosis.iccc3_group,
            diagnosis.iccc3_subgroup,
            diagnosis.diagnosis_date,
            coalesce(diagnosis.diagnosis_date_precision, 'day') AS diagnosis_date_precision,
            diagnosis.age_at_diagnosis_days,
            birth_first_day(patient.birth_year, patient.birth_month) AS birth_first_day,
            diagnosis.is_very_rare
        FROM core.diagnosis AS diagnosis
        JOIN stage.source_params AS params ON params.source_id = diagnosis.source_id AND params.population_based
        LEFT JOIN core.patient_source AS registration
            ON registration.patient_id = diagnosis.patient_id AND registration.source_id = diagnosis.source_id
        LEFT JOIN core.patient AS patient ON patient.patient_id = diagnosis.patient_id
        WHERE diagnosis.event_type = 'initial' AND diagnosis.iccc3_group IS NOT NULL
          AND diagnosis.diagnosis_date IS NOT NULL
    ),

    bound AS (
        -- origin_known_by(patient_id, diagnosis_date, true) of every registered diagnosis at once; none bounds: no row.
        SELECT origin.patient_id, origin.diagnosis_date, min(known.known_on) AS known_on
        FROM (SELECT DISTINCT patient_id, diagnosis_date FROM registered) AS origin
        JOIN origin_known() AS known
            ON known.patient_id = origin.patient_id
           AND origin_bounded_by(known.known_on, known.is_event, origin.diagnosis_date, true)
        GROUP BY origin.patient_id, origin.diagnosis_date
    )

    SELECT registered.* EXCLUDE (is_very_rare), bound.known_on, registered.is_very_rare
    FROM registered
    LEFT JOIN bound USING (patient_id, diagnosis_date);

-- placed_age_years(age_days, first_day, given, not_before, not_after): the age in completed years (completed_years of
-- rule_functions.sql, on the calendar) on the day a date given to the day, month or year is placed on (placed_date,
-- with its bounds), of a patient aged age_days on first_day (its period's first day, as harmonise computes the age):
-- born in March 2002 and diagnosed "in 2020", 18 on 1 July 2020, where the survival marts place the diagnosis, not 17
-- on 1 January. A date known to the day keeps its age.
CREATE OR REPLACE TEMP MACRO placed_age_years(age_days, first_day, given, not_before, not_after) AS completed_years(
    age_days + (placed_date(first_day, given, not_before, not_after) - first_day),
    placed_date(first_day, given, not_before, not_after));

-- registered_age_years(registered, follow_up_end): the age in completed years of a row of incidence_registered() (a
-- row alias, passed as a struct), on the day its diagnosis is placed on as marts.survival places its origin diagnosis
-- (placed_age_years): not before the birth, not after another diagnosis or a treatment start (known_on), nor the end
-- of follow-up (marts.patient_summary's follow_up_end_date, which incidence_registered() cannot read). Read alike by
-- marts.incidence and marts.left_out.
CREATE OR REPLACE TEMP MACRO registered_age_years(registered, follow_up_end) AS placed_age_years(
    registered.age_at_diagnosis_days, registered.diagnosis_date, registered.diagnosis_date_precision,
    registered.birth_first_day, least(registered.known_on, follow_up_end));
