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
-- Precision: completed_years judges the birthday as the age's anchor (the 15th of the birth month, 1 July
-- of a birth year known alone: etl/transform/values.py PartialDate.age_anchor), so a patient within half a
-- month (half a year) of a limit may be misjudged. A limit that quarantines judges only an age surely
-- outside it, by the days the birth and the event can be on. The anchor says what the warehouse knows of
-- the birth (born_first, born_last): the 15th, its month; 1 July, its year (no month is anchored on a 1st);
-- another day, that day. An event date given to the month or year is stored as the first day of its period.
-- So an upper limit is judged on the youngest age (youngest_years: born on the last day the birth can be,
-- on the first day the event can be), a lower limit on the oldest (oldest_years: born on the first day, on
-- the last day, period_end): born "in 2001", diagnosed on 1 July 2020, a patient may be 18; born in June
-- 2019 and enrolled "in June 2020", may be 1 already. A 29 February birthday falls on 1 March in other years.
-- Without a date (not expected: harmonise computes no age without one) the age is age_days / 365.25.
-- period_end(d, given): the last day a date given (its precision: day / month / year) can be (stored as the
-- first day of its period): a death known to be in 2019 is not before a diagnosis in May 2019.
CREATE OR REPLACE TEMP MACRO period_end(d, given) AS CASE given
    WHEN 'year' THEN make_date(year(d), 12, 31)
    WHEN 'month' THEN last_day(d)
    ELSE d END;
-- date_given(d, given): a date as the source gave it, for a finding's message: '2023-06-01 (known to the month)'.
CREATE OR REPLACE TEMP MACRO date_given(d, given) AS d::VARCHAR
    || CASE WHEN given IN ('month', 'year') THEN ' (known to the ' || given || ')' ELSE '' END;
CREATE OR REPLACE TEMP MACRO years_since(born, on_date) AS date_diff('year', born, on_date)
    - CASE WHEN strftime(on_date, '%m-%d') < strftime(born, '%m-%d') THEN 1 ELSE 0 END;
CREATE OR REPLACE TEMP MACRO completed_years(age_days, on_date) AS coalesce(
    years_since(on_date - age_days::INTEGER, on_date), floor(age_days / 365.25)::BIGINT);
CREATE OR REPLACE TEMP MACRO born_first(anchor) AS CASE
    WHEN strftime(anchor, '%m-%d') = '07-01' THEN make_date(year(anchor), 1, 1)
    WHEN day(anchor) = 15 THEN date_trunc('month', anchor)::DATE
    ELSE anchor END;
CREATE OR REPLACE TEMP MACRO born_last(anchor) AS CASE
    WHEN strftime(anchor, '%m-%d') = '07-01' THEN make_date(year(anchor), 12, 31)
    WHEN day(anchor) = 15 THEN last_day(anchor)
    ELSE anchor END;
CREATE OR REPLACE TEMP MACRO youngest_years(age_days, on_date) AS coalesce(
    years_since(born_last(on_date - age_days::INTEGER), on_date), floor(age_days / 365.25)::BIGINT);
CREATE OR REPLACE TEMP MACRO oldest_years(age_days, on_date, given) AS coalesce(
    years_since(born_first(on_date - age_days::INTEGER), period_end(on_date, given)),
    floor((age_days + date_diff('day', on_date, period_end(on_date, given))) / 365.25)::BIGINT);
