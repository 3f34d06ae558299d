-- rule_id: XT-ADVICE-FOLLOWED-TREATMENT
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0.05
-- table: tumour_board_review
-- field: advice_followed
-- description: The advice is marked as followed, but no treatment with a recommended agent starts on or after the recommendation in that source.
-- expected: a treatment with a recommended agent started after the recommendation, or advice_followed corrected
--
-- Grain: one row per review marked followed whose patient has, in the same source, no treatment with
-- a recommended agent that may start on or after the recommendation: a start known to the month or
-- year may be on its period's last day (period_end), and a start or recommendation without a date
-- may be in order (a missing start is TRT-START-PRESENT's finding).
SELECT r.source_id, r.source_record_key, r.recommended_agents AS value
FROM tumour_board_review r
WHERE r.advice_followed AND r.recommended_agents IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM treatment t
      WHERE t.source_id = r.source_id AND t.patient_id = r.patient_id
        AND coalesce(period_end(t.start_date, t.start_date_precision) >= r.recommendation_date, true)
        AND list_contains(string_split(lower(r.recommended_agents), '|'), lower(t.drug_name)))
