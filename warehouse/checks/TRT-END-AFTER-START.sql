-- rule_id: TRT-END-AFTER-START
-- category: plausibility
-- subcategory: verification
-- level: record
-- severity: error
-- threshold: 0
-- table: treatment
-- field: end_date
-- description: The treatment ends before it starts.
-- expected: an end date on or after the start date
--
-- Grain: one row per treatment line that surely ends before it starts: the last day its end can be
-- (an end known to the month or year, period_end) is before the first day its start can be. A line
-- ending on the day it starts passes; a line without an end (ongoing) or a start is not judged.
SELECT source_id, source_record_key, end_date AS value,
       'ends ' || date_given(end_date, end_date_precision) || ', starts ' || start_date AS message
FROM treatment
WHERE period_end(end_date, end_date_precision) < start_date
