-- rule_id: XT-CRIZOTINIB-ALK-ROS1
-- category: plausibility
-- subcategory: validation
-- level: cross-table
-- severity: warning
-- threshold: 0
-- table: study_enrolment
-- scope: study_id = 'CRIZOTINIB'
-- description: A patient enrolled in the crizotinib trial has no ALK or ROS1 rearrangement recorded.
-- expected: an ALK or ROS1 fusion (or rearrangement) in the molecular results
SELECT e.source_id, e.source_record_key, NULL AS value
FROM study_enrolment e
WHERE e.study_id = 'CRIZOTINIB'
  AND NOT EXISTS (SELECT 1 FROM molecular_alteration m
                  WHERE m.source_id = e.source_id AND m.patient_id = e.patient_id AND m.alteration_type = 'fusion'
                    AND (m.gene_symbol IN ('ALK', 'ROS1') OR m.partner_gene IN ('ALK', 'ROS1')))
