-- rule_id: XT-ALK-ROS1-REQUIRED
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: study_enrolment
-- params: requires_alk_ros1
-- description: The study requires an ALK or ROS1 rearrangement (e.g. the crizotinib trial), but the patient has none recorded in that source.
-- expected: an ALK or ROS1 fusion (or rearrangement) in the molecular results
-- Grain: one row per enrolment, in sources with requires_alk_ros1 true, whose patient has no ALK/ROS1 fusion.
WITH alk_ros1 AS (
    SELECT DISTINCT source_id, patient_id
    FROM molecular_alteration
    WHERE alteration_type = 'fusion'
      AND (gene_symbol IN ('ALK', 'ROS1') OR partner_gene IN ('ALK', 'ROS1'))
)
SELECT e.source_id, e.source_record_key, NULL AS value
FROM study_enrolment e
JOIN source_params p USING (source_id)
WHERE p.requires_alk_ros1
  AND NOT EXISTS (SELECT 1 FROM alk_ros1 a WHERE a.source_id = e.source_id AND a.patient_id = e.patient_id)
