-- marts.held_back_endpoints: one row per source x centre x endpoint: the deaths, relapses,
-- progressions and responses that records held back in dq.quarantine carry. A record is held
-- back whole for any error in it (a follow-up with a contact date after the export also holds its
-- valid death date back), so core, and the survival and response marts built from it, miss
-- these endpoints until the centre corrects the record.
--
-- Two kinds of held-back record: one held back by a cross-table rule was read, and stage holds
-- its values; one refused while being read (a format or code check: an impossible date, a code
-- not in the list, a repeated record key) never reaches stage's tables, and its values are not
-- kept anywhere: dq.quarantine says only which tables it was for.
--
-- Definitions
--   endpoint, from the held-back stage records (what the source sent, harmonised):
--     death        a follow-up with vital status dead or a date of death;
--     relapse      a diagnosis event of type relapse;
--     progression  a diagnosis event of type progression, or a follow-up with disease status
--                  progression (the EFS events of marts.survival);
--     response     a response assessment (any timepoint), read or not: any assessment is one;
--     unknown      a follow-up or diagnosis record refused while being read: whether it carries
--                  a death, relapse or progression is not known (its values were not kept), so
--                  it is listed for the centre to correct, as a possible one.
--   missed: core holds no such endpoint of the patient from another record (death: the patient
--     is not dead in core.patient; relapse/progression: no core diagnosis of that type, or
--     follow-up progression, on that date; response: no core assessment of that treatment and
--     timepoint, or, for an assessment refused while being read (its treatment and timepoint
--     unknown), no core assessment from the same record: the first copy of a repeated record
--     key), so the marts do not show it at all. Never for unknown: no endpoint is known missed.
--   patients: of a record refused while being read, the patient of its source pseudonym (the
--     key's first part) in core.patient_source, or that pseudonym when the source's patient
--     is not in core.
--   record keys: the pseudonymised source record keys (<patient pseudonym>|<local part>), as in
--     dq.quarantine and dq.issue, for a quality officer to chase with the centre.
-- Reads stage (the records as sent) and dq.quarantine (the current run's held-back records).

CREATE OR REPLACE TABLE marts.held_back_endpoints AS
WITH held_back AS (
    SELECT source_id, source_record_key, coalesce(centre_id, 'unknown') AS centre_id, rule_ids
    FROM dq.quarantine
),

unread AS (  -- refused while being read: in none of the stage tables it was for
    SELECT
        quarantine.source_id,
        quarantine.source_record_key,
        coalesce(patient_source.patient_id,
                 quarantine.source_id || ':' || split_part(quarantine.source_record_key, '|', 1)) AS patient_id,
        CASE WHEN list_contains(quarantine.target_tables, 'response_assessment') THEN 'response'
             ELSE 'unknown' END AS endpoint
    FROM dq.quarantine AS quarantine
    LEFT JOIN core.patient_source
        ON patient_source.source_id = quarantine.source_id
       AND patient_source.source_patient_pseudonym = split_part(quarantine.source_record_key, '|', 1)
    WHERE list_has_any(quarantine.target_tables, ['follow_up', 'diagnosis', 'response_assessment'])
      AND NOT EXISTS (SELECT 1 FROM stage.follow_up AS staged
                      WHERE staged.source_id = quarantine.source_id
                        AND staged.source_record_key = quarantine.source_record_key)
      AND NOT EXISTS (SELECT 1 FROM stage.diagnosis AS staged
                      WHERE staged.source_id = quarantine.source_id
                        AND staged.source_record_key = quarantine.source_record_key)
      AND NOT EXISTS (SELECT 1 FROM stage.response_assessment AS staged
                      WHERE staged.source_id = quarantine.source_id
                        AND staged.source_record_key = quarantine.source_record_key)
),

endpoint AS (
    SELECT source_id, source_record_key, patient_id, 'death' AS endpoint, death_date AS endpoint_date,
           NULL::VARCHAR AS treatment_id, NULL::VARCHAR AS timepoint, true AS is_read
    FROM stage.follow_up
    WHERE vital_status = 'dead' OR death_date IS NOT NULL
    UNION ALL
    SELECT source_id, source_record_key, patient_id, event_type, diagnosis_date, NULL, NULL, true
    FROM stage.diagnosis
    WHERE event_type IN ('relapse', 'progression')
    UNION ALL
    SELECT source_id, source_record_key, patient_id, 'progression', contact_date, NULL, NULL, true
    FROM stage.follow_up
    WHERE disease_status = 'progression'
    UNION ALL
    SELECT source_id, source_record_key, patient_id, 'response', assessment_date, treatment_id, timepoint, true
    FROM stage.response_assessment
    UNION ALL
    SELECT source_id, source_record_key, patient_id, endpoint, NULL, NULL, NULL, false
    FROM unread
),

core_event AS (  -- the relapses and progressions core holds, as marts.survival reads them
    SELECT patient_id, event_type AS endpoint, diagnosis_date AS endpoint_date
    FROM core.diagnosis
    WHERE event_type IN ('relapse', 'progression')
    UNION ALL
    SELECT patient_id, 'progression', contact_date FROM core.follow_up WHERE disease_status = 'progression'
),

held_endpoint AS (
    SELECT
        endpoint.*,
        held_back.centre_id,
        held_back.rule_ids,
        CASE
            WHEN endpoint.endpoint = 'unknown' THEN false
            WHEN NOT endpoint.is_read THEN NOT EXISTS (  -- an assessment refused while being read
                SELECT 1 FROM core.response_assessment AS response
                WHERE response.source_id = endpoint.source_id
                  AND response.source_record_key = regexp_replace(endpoint.source_record_key, '#[0-9]+$', ''))
            WHEN endpoint.endpoint = 'death' THEN NOT EXISTS (
                SELECT 1 FROM core.patient AS patient
                WHERE patient.patient_id = endpoint.patient_id AND patient.vital_status = 'dead')
            WHEN endpoint.endpoint = 'response' THEN NOT EXISTS (
                SELECT 1 FROM core.response_assessment AS response
                WHERE response.treatment_id IS NOT DISTINCT FROM endpoint.treatment_id
                  AND response.patient_id = endpoint.patient_id
                  AND response.timepoint IS NOT DISTINCT FROM endpoint.timepoint)
            ELSE NOT EXISTS (
                SELECT 1 FROM core_event
                WHERE core_event.patient_id = endpoint.patient_id AND core_event.endpoint = endpoint.endpoint
                  AND core_event.endpoint_date IS NOT DISTINCT FROM endpoint.endpoint_date)
        END AS is_missed
    FROM endpoint
    JOIN held_back USING (source_id, source_record_key)
)

SELECT
    source_id,
    centre_id,
    endpoint,
    count(*) AS n_records,
    count(DISTINCT patient_id) AS n_patients,
    count(*) FILTER (WHERE is_missed) AS n_missed,
    list_sort(list(DISTINCT source_record_key)) AS source_record_keys,
    list_sort(list_distinct(flatten(list(rule_ids)))) AS rule_ids
FROM held_endpoint
GROUP BY ALL
ORDER BY source_id, centre_id, endpoint;

COMMENT ON TABLE marts.held_back_endpoints IS 'Deaths, relapses, progressions and responses carried by records held back in dq.quarantine, and the follow-up and diagnosis records refused while being read that may carry one (endpoint unknown), per source, centre and endpoint: what the survival and response marts miss until the centres correct the records.';
COMMENT ON COLUMN marts.held_back_endpoints.source_id IS 'Source of the held-back records.';
COMMENT ON COLUMN marts.held_back_endpoints.centre_id IS 'Centre of the held-back records, as the source codes it; unknown when not given.';
COMMENT ON COLUMN marts.held_back_endpoints.endpoint IS 'The endpoint the records carry; unknown for follow-up and diagnosis records refused while being read (their values were not kept: they may carry a death, relapse or progression). Codes: death / relapse / progression / response / unknown.';
COMMENT ON COLUMN marts.held_back_endpoints.n_records IS 'Held-back records carrying the endpoint. Unit: records.';
COMMENT ON COLUMN marts.held_back_endpoints.n_patients IS 'Distinct patients of those records. Unit: patients.';
COMMENT ON COLUMN marts.held_back_endpoints.n_missed IS 'Records whose endpoint core does not hold from another record either (death: patient not dead in core.patient; relapse or progression: none of that type on that date; response: none for that treatment and timepoint, or, refused while being read, none from the same record), so the marts miss it; 0 for unknown. Unit: records.';
COMMENT ON COLUMN marts.held_back_endpoints.source_record_keys IS 'The held-back records, as pseudonymised source record keys (<patient pseudonym>|<local part>, as in dq.quarantine), for a quality officer to chase.';
COMMENT ON COLUMN marts.held_back_endpoints.rule_ids IS 'The error rules that held the records back (dq.check).';
