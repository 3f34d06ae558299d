-- Functions the rules in warehouse/checks/ share, created as temporary macros on the connection
-- that runs them (etl/quality/sql_checks.py), so the published warehouse holds none of them;
-- period_end places a partial death in core.patient too (warehouse/patient.sql), as the rules judge it.
--
-- completed_years(age_days, on_date): the age in completed years on on_date, as protocols and
-- registries count it: "age 0-18" admits a patient up to the day before the 19th birthday, "age
-- <= 25" up to the day before the 26th. Harmonise computes age_days (age_at_enrolment_days,
-- age_at_diagnosis_days) from the birth date as the warehouse knows it, to the month: from the
-- 15th of the birth month (from the day itself, on_date - age_days would publish the birth date).
-- So the birth date the age was computed from is on_date - age_days: the birthday is found on the
-- calendar, not with 365.25-day years (which put the 19th birthday up to a day off and, with
-- `max x 365.25`, ended "0-18" on the 18th birthday).
-- Precision: the birthday is judged as the 15th of the birth month, so a patient within half a
-- month of the limit may be misjudged; an event date given to the month or year is stored as the first day
-- of its period, so an upper limit is judged on that first day (never a later day than the
-- event can have been), and a lower limit on its last day (oldest_years). A 29 February birthday
-- falls on 1 March in other years.
-- Without a date (not expected: harmonise computes no age without one) the age is age_days / 365.25.
-- oldest_years(age_days, on_date, given): completed_years on the last day on_date, given to the day,
-- month or year, can be: enrolled "in June 2020", a patient born in June 2019 may be 1 already.
-- period_end(d, given): the last day a date given (its precision: day / month / year) can be (stored as the
-- first day of its period): a death known to be in 2019 is not before a diagnosis in May 2019.
CREATE OR REPLACE TEMP MACRO period_end(d, given) AS CASE given
    WHEN 'year' THEN make_date(year(d), 12, 31)
    WHEN 'month' THEN last_day(d)
    ELSE d END;
CREATE OR REPLACE TEMP MACRO completed_years(age_days, on_date) AS coalesce(
    date_diff('year', on_date - age_days::INTEGER, on_date)
        - CASE WHEN strftime(on_date, '%m-%d') < strftime(on_date - age_days::INTEGER, '%m-%d') THEN 1 ELSE 0 END,
    floor(age_days / 365.25)::BIGINT);
CREATE OR REPLACE TEMP MACRO oldest_years(age_days, on_date, given) AS completed_years(
    age_days + date_diff('day', on_date, period_end(on_date, given)), period_end(on_date, given));
