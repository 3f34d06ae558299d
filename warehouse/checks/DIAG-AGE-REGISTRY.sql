-- rule_id: DIAG-AGE-REGISTRY
-- category: plausibility
-- subcategory: validation
-- level: field
-- severity: error
-- confirmable: true
-- threshold: 0
-- table: diagnosis
-- field: age_at_diagnosis_days
-- scope: age_at_diagnosis_days IS NOT NULL AND coalesce(event_type, 'initial') = 'initial'
-- params: min_age_at_diagnosis_years, max_age_at_diagnosis_years
-- description: A registry that registers patients by their age at initial diagnosis (e.g. children diagnosed at 0-18, that is before their 19th birthday) has a patient outside that range: the birth or diagnosis date is wrong, or the patient is not in scope. Only an age surely outside is flagged: with a birth known to the month or year (a diagnosis date too), the patient is given the age nearest the range.
-- expected: an age at initial diagnosis within the source's range: at most max_age_at_diagnosis_years completed years (diagnosed before the birthday after it)
-- Grain: one row per initial diagnosis outside its source's range; relapses may come later in life.
-- Ages are in completed years on the diagnosis date (warehouse/rule_functions.sql), only an age surely
-- outside flagged: the upper limit on the youngest the patient can be (born on the last day the birth
-- known to the month or year can be, diagnosed on the first day a diagnosis date can be), the lower on
-- the oldest (born on the first, diagnosed on the last).
WITH initial_diagnosis AS (
    SELECT d.source_id, d.source_record_key, d.age_at_diagnosis_days AS age_days,
           youngest_years(d.age_at_diagnosis_days, d.diagnosis_date) AS youngest_age_years,
           oldest_years(d.age_at_diagnosis_days, d.diagnosis_date, d.diagnosis_date_precision) AS oldest_age_years,
           p.min_age_at_diagnosis_years AS min_years, p.max_age_at_diagnosis_years AS max_years
    FROM diagnosis d
    JOIN source_params p USING (source_id)
    WHERE d.age_at_diagnosis_days IS NOT NULL AND coalesce(d.event_type, 'initial') = 'initial'
)
SELECT source_id, source_record_key, age_days::VARCHAR AS value,
       'age at diagnosis ' || CASE WHEN youngest_age_years > max_years THEN 'at least ' || youngest_age_years
                                   ELSE 'at most ' || oldest_age_years END
       || ' completed years (' || age_days || ' days); the source registers from '
       || coalesce(regexp_replace(min_years::VARCHAR, '\.0$', ''), '0') || ' to '
       || coalesce(regexp_replace(max_years::VARCHAR, '\.0$', ''), 'any age')
       || ' completed years (params min_age_at_diagnosis_years, max_age_at_diagnosis_years)' AS message
FROM initial_diagnosis
WHERE oldest_age_years < min_years OR youngest_age_years > max_years
