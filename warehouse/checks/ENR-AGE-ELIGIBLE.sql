-- rule_id: ENR-AGE-ELIGIBLE
-- category: plausibility
-- subcategory: validation
-- level: field
-- severity: error
-- confirmable: true
-- threshold: 0
-- table: study_enrolment
-- field: age_at_enrolment_days
-- scope: age_at_enrolment_days IS NOT NULL
-- params: min_age_years, max_age_years
-- description: The patient is outside the age range the study or registry enrols at inclusion (its min_age_years to max_age_years, in completed years: "0-18" admits a patient up to the day before the 19th birthday): the birth or enrolment date is wrong, or the patient was not eligible. Only an age surely outside is flagged: with a birth known to the month or year (an enrolment date too), the patient is given the age nearest the range.
-- expected: an age at enrolment within the source's range: at least min_age_years and at most max_age_years completed years (enrolled before the birthday after max_age_years)
-- Grain: one row per enrolment record outside its source's range; a missing bound does not limit.
-- Ages are in completed years on the enrolment date (warehouse/rule_functions.sql), only an age surely
-- outside flagged: the upper limit on the youngest the patient can be (born on the last day the birth
-- known to the month or year can be, enrolled on the first day an enrolment date can be), the lower on
-- the oldest (born on the first, enrolled on the last).
WITH enrolment AS (
    SELECT e.source_id, e.source_record_key, e.age_at_enrolment_days AS age_days,
           youngest_years(e.age_at_enrolment_days, e.enrolment_date) AS youngest_age_years,
           oldest_years(e.age_at_enrolment_days, e.enrolment_date, e.enrolment_date_precision) AS oldest_age_years,
           p.min_age_years, p.max_age_years
    FROM study_enrolment e
    JOIN source_params p USING (source_id)
    WHERE e.age_at_enrolment_days IS NOT NULL
)
SELECT source_id, source_record_key, age_days::VARCHAR AS value,
       'age at enrolment ' || CASE WHEN youngest_age_years > max_age_years THEN 'at least ' || youngest_age_years
                                   ELSE 'at most ' || oldest_age_years END
       || ' completed years (' || age_days || ' days); the source enrols from '
       || coalesce(regexp_replace(min_age_years::VARCHAR, '\.0$', ''), '0') || ' to '
       || coalesce(regexp_replace(max_age_years::VARCHAR, '\.0$', ''), 'any age')
       || ' completed years (params min_age_years, max_age_years)' AS message
FROM enrolment
WHERE oldest_age_years < min_age_years OR youngest_age_years > max_age_years
