-- rule_id: PAT-EUPID-SHARED
-- category: plausibility
-- subcategory: verification
-- level: record
-- severity: warning
-- threshold: 0
-- table: patient_source
-- field: eupid
-- description: Two patients of one source carry the same EUPID (a typo at the centre, or one child registered twice). Linkage links neither by it: each is linked on its score or by a reviewer alone, until the centre corrects it.
-- expected: each EUPID given to one patient of the source
--
-- Grain: one row per patient registration whose EUPID another patient of the same source has.
-- stage.link_key holds each source patient's harmonised id, the digest of the EUPID when there is one (never the
-- EUPID in clear): two patients sharing an EUPID share it. The other patients are named by their record keys.
SELECT k.source_id, k.source_record_key, NULL AS value,
       'the EUPID of this patient is also that of ' || k.source_id || ' patient record '
        || string_agg(o.source_record_key, ', ' ORDER BY o.source_record_key)
        || ': linkage links neither by it' AS message
FROM link_key k
JOIN link_key o
  ON o.source_id = k.source_id AND o.harmonised_patient_id = k.harmonised_patient_id
 AND o.source_patient_pseudonym <> k.source_patient_pseudonym AND o.has_eupid
WHERE k.has_eupid
GROUP BY k.source_id, k.source_record_key
