-- rule_id: XT-TREATMENT-AFTER-DIAGNOSIS
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0.01
-- table: treatment
-- field: start_date
-- description: A treatment starts before the patient's first diagnosis of the tumour in that source.
-- expected: diagnosis on or before the start of treatment
--
-- Grain: one row per treatment line that surely starts before the first diagnosis: the last day its
-- start can be (a start known to the month or year, period_end) is before the first day the first
-- diagnosis can be (its stored first day). A line starting on the day of diagnosis passes.
WITH first_diagnosis AS (
    SELECT source_id, patient_id, min(diagnosis_date) AS diagnosed FROM diagnosis GROUP BY ALL
)
SELECT t.source_id, t.source_record_key, t.start_date AS value,
       'starts ' || t.start_date || ', first diagnosis ' || d.diagnosed AS message
FROM treatment t JOIN first_diagnosis d USING (source_id, patient_id)
WHERE period_end(t.start_date, t.start_date_precision) < d.diagnosed  -- a start in "May 2019" may be on 31 May
