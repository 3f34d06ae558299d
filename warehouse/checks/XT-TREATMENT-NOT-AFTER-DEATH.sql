-- rule_id: XT-TREATMENT-NOT-AFTER-DEATH
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: treatment
-- field: start_date
-- description: A treatment starts after the patient's date of death given in the same source.
-- expected: treatment starts before death
WITH death AS (
    -- the last day each death can be (a death in "2019" may be in December)
    SELECT source_id, patient_id, min(period_end(death_date, death_date_precision)) AS died
    FROM follow_up WHERE death_date IS NOT NULL GROUP BY ALL
)
SELECT t.source_id, t.source_record_key, t.start_date AS value,
       'starts ' || t.start_date || ', died on ' || d.died || ' at the latest' AS message
FROM treatment t JOIN death d USING (source_id, patient_id)
WHERE t.start_date > d.died
