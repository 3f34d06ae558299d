-- rule_id: XT-NOTHING-AFTER-DEATH
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: follow_up
-- field: contact_date
-- description: The patient is seen alive, or a contact is recorded, after the date of death given in the same source.
-- expected: no contact after the date of death
--
-- Grain: one row per follow-up record not reporting the death (alive, lost, opted out, or no vital
-- status) whose contact surely comes after the death: its first possible day is after the last day
-- the death can be. A contact on the day of death passes; the record that reports the death may be
-- dated later (the day the centre learnt of it).
WITH death AS (
    -- the last day each death can be (a death in "2019" may be in December)
    SELECT source_id, patient_id, min(period_end(death_date, death_date_precision)) AS died
    FROM follow_up WHERE death_date IS NOT NULL GROUP BY ALL
)
SELECT f.source_id, f.source_record_key, f.contact_date AS value,
       'contact ' || f.contact_date || ' after death (on ' || d.died || ' at the latest)' AS message
FROM follow_up f JOIN death d USING (source_id, patient_id)
WHERE f.contact_date > d.died AND f.vital_status IS DISTINCT FROM 'dead'
