-- rule_id: ENR-LVEF-ELIGIBLE
-- category: plausibility
-- subcategory: validation
-- level: field
-- severity: error
-- confirmable: true
-- threshold: 0
-- table: study_enrolment
-- field: lvef_percent
-- scope: lvef_percent IS NOT NULL
-- params: min_lvef_percent
-- description: The study requires a left-ventricular ejection fraction above its min_lvef_percent at screening (e.g. above 60% for crizotinib); this patient's is not, or is over 100%.
-- expected: LVEF at screening above the study's minimum and at most 100%
-- Grain: one row per enrolment whose screening LVEF is out of the study's range.
SELECT e.source_id, e.source_record_key, e.lvef_percent::VARCHAR AS value,
       'LVEF ' || e.lvef_percent || '% at screening; the study requires more than '
       || p.min_lvef_percent || '% (param min_lvef_percent)' AS message
FROM study_enrolment e
JOIN source_params p USING (source_id)
WHERE e.lvef_percent <= p.min_lvef_percent OR e.lvef_percent > 100
