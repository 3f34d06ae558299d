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
-- EUPID in clear): patients sharing an EUPID share it. A message names the first three others of the record's own
-- centre by their record keys and counts the rest, and counts those of other centres without naming them: the
-- message goes to the centre with its queries (a record key of another hospital's is not its to see), and a
-- placeholder typed for every patient makes one group of thousands.
WITH eupid AS (
    SELECT l.source_id, l.source_record_key, l.harmonised_patient_id, r.centre_id,
           count(*) OVER (PARTITION BY l.source_id, l.harmonised_patient_id) AS sharing
    FROM link_key AS l
    LEFT JOIN (SELECT DISTINCT source_id, source_record_key, centre_id FROM record) AS r
        USING (source_id, source_record_key)
    WHERE l.has_eupid
),
at_centre AS (
    SELECT source_id, harmonised_patient_id, centre_id, count(*) AS here,
           list(source_record_key ORDER BY source_record_key)[1:4] AS first_keys
    FROM eupid
    WHERE sharing > 1
    GROUP BY ALL
)
SELECT e.source_id, e.source_record_key, NULL AS value,
       'the EUPID of this patient is also that of ' || (e.sharing - 1) || ' other patient(s) of ' || e.source_id
        || CASE WHEN c.here > 1
                THEN ': patient record ' || array_to_string(list_filter(c.first_keys, k -> k <> e.source_record_key)[1:3],
                                                            ', ') || CASE WHEN c.here > 4 THEN ', ...' ELSE '' END
                ELSE '' END
        || CASE WHEN e.sharing > c.here THEN CASE WHEN c.here > 1 THEN ', and ' ELSE ': ' END
                || (e.sharing - c.here) || ' at another centre' ELSE '' END
        || '; linkage links none of them by it' AS message
FROM eupid e
JOIN at_centre c ON c.source_id = e.source_id AND c.harmonised_patient_id = e.harmonised_patient_id
                AND c.centre_id IS NOT DISTINCT FROM e.centre_id  -- the groups of more than one
