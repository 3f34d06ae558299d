-- rule_id: ENR-LVEF-PRESENT
-- category: completeness
-- subcategory: validation
-- level: field
-- severity: warning
-- threshold: 0
-- table: study_enrolment
-- field: lvef_percent
-- params: min_lvef_percent
-- description: The study has a minimum ejection fraction for eligibility, but this patient's screening LVEF is not recorded.
-- expected: LVEF at screening
-- Grain: one row per enrolment without an LVEF, in sources that set min_lvef_percent.
SELECT e.source_id, e.source_record_key, NULL AS value
FROM study_enrolment e
JOIN source_params p USING (source_id)
WHERE p.min_lvef_percent IS NOT NULL AND e.lvef_percent IS NULL
