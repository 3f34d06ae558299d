-- rule_id: AE-END-AFTER-ONSET
-- category: plausibility
-- subcategory: verification
-- level: record
-- severity: error
-- threshold: 0
-- table: adverse_event
-- field: end_date
-- description: The adverse event ends before its onset.
-- expected: an end date on or after the onset date
--
-- Grain: one row per adverse event that surely ends before its onset: the last day its end can be
-- (an end known to the month or year, period_end) is before the first day its onset can be. An
-- event ending on the day of its onset passes; one without an end (ongoing) or an onset is not judged.
SELECT source_id, source_record_key, end_date AS value,
       'ends ' || date_given(end_date, end_date_precision) || ', onset ' || onset_date AS message
FROM adverse_event
WHERE period_end(end_date, end_date_precision) < onset_date
