-- marts.adverse_events: one row per drug (INN) x access route.
--
-- Definitions
--   exposed: a patient with a treatment of that drug by that route, counted only in sources that
--     record adverse events (a source with at least one row in core.adverse_event); a registry
--     that does not collect toxicity would otherwise look free of it.
--   an adverse event belongs to the treatment it is recorded against (treatment_id) and to every
--     drug of that treatment's line in its source (line_number): a combination's event counts for
--     each of its drugs, as a trial records events for its arm as a whole (ESMART's point to the
--     arm's first drug) and no source says which drug of a regimen caused one. Events without a
--     treatment are not attributed to a drug. Grade is CTCAE v5.
--   proportion_grade3plus = n_patients_grade3plus / n_patients_exposed, and likewise for serious.

CREATE OR REPLACE TABLE marts.adverse_events AS
WITH recording_sources AS (
    SELECT DISTINCT source_id FROM core.adverse_event
),

exposure AS (
    SELECT
        treatment.treatment_id,
        treatment.patient_id,
        treatment.source_id,
        treatment.line_number,
        treatment.drug_name,
        coalesce(treatment.access_route, 'unknown') AS access_route
    FROM core.treatment AS treatment
    SEMI JOIN recording_sources USING (source_id)
),

event AS (  -- each event once per drug and route of its treatment's line
    SELECT DISTINCT
        adverse_event.ae_id,
        exposure.drug_name,
        exposure.access_route,
        exposure.patient_id,
        adverse_event.ctcae_grade >= 3 AS is_grade3plus,
        coalesce(adverse_event.is_serious, false) AS is_serious
    FROM core.adverse_event AS adverse_event
    JOIN exposure AS against USING (treatment_id)
    JOIN exposure
        ON exposure.source_id = against.source_id
       AND exposure.patient_id = against.patient_id
       AND (exposure.treatment_id = against.treatment_id OR exposure.line_number = against.line_number)
),

exposed AS (
    SELECT drug_name, access_route, count(DISTINCT patient_id) AS n_patients_exposed
    FROM exposure
    GROUP BY ALL
),

harmed AS (
    SELECT
        drug_name,
        access_route,
        count(*) AS n_events,
        count(*) FILTER (WHERE is_grade3plus) AS n_events_grade3plus,
        count(DISTINCT patient_id) FILTER (WHERE is_grade3plus) AS n_patients_grade3plus,
        count(*) FILTER (WHERE is_serious) AS n_serious_events,
        count(DISTINCT patient_id) FILTER (WHERE is_serious) AS n_patients_serious
    FROM event
    GROUP BY ALL
)

SELECT
    exposed.drug_name,
    exposed.access_route,
    exposed.n_patients_exposed,
    coalesce(harmed.n_events, 0) AS n_events,
    coalesce(harmed.n_events_grade3plus, 0) AS n_events_grade3plus,
    coalesce(harmed.n_patients_grade3plus, 0) AS n_patients_grade3plus,
    coalesce(harmed.n_patients_grade3plus, 0) / exposed.n_patients_exposed AS proportion_grade3plus,
    coalesce(harmed.n_serious_events, 0) AS n_serious_events,
    coalesce(harmed.n_patients_serious, 0) AS n_patients_serious,
    coalesce(harmed.n_patients_serious, 0) / exposed.n_patients_exposed AS proportion_serious
FROM exposed
LEFT JOIN harmed USING (drug_name, access_route)
ORDER BY drug_name, access_route;

COMMENT ON TABLE marts.adverse_events IS 'Safety per drug and access route: patients exposed, patients with CTCAE grade >= 3 events and with serious events, their proportions, and event counts. Only sources that record adverse events count; events against a treatment not in core, or against none, are not counted (how many: marts.left_out).';
COMMENT ON COLUMN marts.adverse_events.drug_name IS 'Drug, INN in lower case.';
COMMENT ON COLUMN marts.adverse_events.access_route IS 'How the drug was given. Codes: trial / off_label / compassionate / standard / unknown.';
COMMENT ON COLUMN marts.adverse_events.n_patients_exposed IS 'Patients treated with the drug by that route, in sources that record adverse events. Unit: patients.';
COMMENT ON COLUMN marts.adverse_events.n_events IS 'Adverse events of any grade recorded against these treatments or another of their line (a combination''s event counts for each of its drugs). Unit: events.';
COMMENT ON COLUMN marts.adverse_events.n_events_grade3plus IS 'Adverse events of CTCAE grade 3, 4 or 5. Unit: events.';
COMMENT ON COLUMN marts.adverse_events.n_patients_grade3plus IS 'Exposed patients with at least one event of CTCAE grade >= 3. Unit: patients.';
COMMENT ON COLUMN marts.adverse_events.proportion_grade3plus IS 'n_patients_grade3plus / n_patients_exposed. Unit: proportion (0-1).';
COMMENT ON COLUMN marts.adverse_events.n_serious_events IS 'Serious adverse events (is_serious). Unit: events.';
COMMENT ON COLUMN marts.adverse_events.n_patients_serious IS 'Exposed patients with at least one serious adverse event. Unit: patients.';
COMMENT ON COLUMN marts.adverse_events.proportion_serious IS 'n_patients_serious / n_patients_exposed. Unit: proportion (0-1).';
