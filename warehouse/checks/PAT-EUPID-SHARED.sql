-- rule_id: PAT-EUPID-SHARED
-- category: plausibility
-- subcategory: verification
-- level: record
-- severity: warning
-- threshold: 0
-- table: patient_source
-- field: eupid
-- description: Two patients of one source carry the same EUPID (a typo at the centre, or one child registered twice). Linkage links none of them by it: each is linked on its score or by a reviewer alone, until the centre corrects it.
-- expected: each EUPID given to one patient of the source
--
-- Grain: one row per patient registration whose EUPID another patient of the same source has.
-- stage.link_key holds each source patient's harmonised id, the digest of the EUPID when there is one (never the
-- EUPID in clear): patients sharing an EUPID share it. A message names the first three others by their record
-- keys and counts the rest, as a placeholder typed for every patient (EU00000000) makes one group of thousands.
WITH eupid AS (
    SELECT source_id, source_record_key, harmonised_patient_id,
           count(*) OVER (PARTITION BY source_id, harmonised_patient_id) AS sharing
    FROM link_key
    WHERE has_eupid
),
shared_by AS (
    SELECT source_id, harmonised_patient_id, list(source_record_key ORDER BY source_record_key)[1:4] AS first_keys
    FROM eupid
    WHERE sharing > 1
    GROUP BY ALL
)
SELECT e.source_id, e.source_record_key, NULL AS value,
       'the EUPID of this patient is also that of ' || (e.sharing - 1) || ' other patient(s) of ' || e.source_id
        || ': patient record ' || array_to_string(list_filter(s.first_keys, k -> k <> e.source_record_key)[1:3], ', ')
        || CASE WHEN e.sharing > 4 THEN ', ...' ELSE '' END || '; linkage links none of them by it' AS message
FROM eupid e
JOIN shared_by s USING (source_id, harmonised_patient_id)  -- the groups of more than one
