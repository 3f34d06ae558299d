-- rule_id: FU-DEATH-DATE-WHEN-DEAD
-- category: completeness
-- subcategory: validation
-- level: field
-- severity: warning
-- threshold: 0.1
-- table: follow_up
-- field: death_date
-- scope: vital_status = 'dead'
-- description: The patient is reported dead without a date of death, and no other record of the same source gives it: a later follow-up that repeats "dead" without the date the source gave before is not queried.
-- expected: the date of death
--
-- Grain: one row per follow-up reporting the death without its date, of a person none of whose follow-ups
-- in that source dates the death. The centre is asked only for what its source does not say: a follow-up
-- form repeating the vital status after the death form is not a missing date (core.patient takes the date
-- from the record that gives it). Another source's date does not count: it is not the centre's to confirm.
SELECT f.source_id, f.source_record_key,
       'reported dead without a date of death, and no record of this source gives it' AS message
FROM follow_up f
WHERE f.vital_status = 'dead' AND f.death_date IS NULL
  AND NOT EXISTS (SELECT 1 FROM follow_up dated
                  WHERE dated.source_id = f.source_id AND dated.patient_id = f.patient_id
                    AND dated.death_date IS NOT NULL)
