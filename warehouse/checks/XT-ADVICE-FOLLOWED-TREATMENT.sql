-- rule_id: XT-ADVICE-FOLLOWED-TREATMENT
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0.05
-- table: tumour_board_review
-- field: advice_followed
-- description: The advice is marked as followed, but no treatment with a recommended agent starts on or after the recommendation.
-- expected: a treatment with a recommended agent started after the recommendation, or advice_followed corrected
SELECT r.source_id, r.source_record_key, r.recommended_agents AS value
FROM tumour_board_review r
WHERE r.advice_followed AND r.recommended_agents IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM treatment t
      WHERE t.source_id = r.source_id AND t.patient_id = r.patient_id
        AND t.start_date >= r.recommendation_date
        AND list_contains(string_split(lower(r.recommended_agents), '|'), lower(t.drug_name)))
