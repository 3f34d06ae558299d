-- marts.actionable_events: one row per source x disease (ICCC-3 subgroup) x actionable event.
--
-- Definitions
--   actionable event: a molecular alteration or marker with is_actionable = true, named by class:
--     fusion -> 5' gene::3' gene (EML4::ALK); surface_marker -> the marker (CD19); any other
--     alteration (SNV, indel, CNV, expression) -> the gene (FLT3), so the event is the gene.
--   disease: ICCC-3 subgroup of the patient's first diagnosis (marts.patient_summary).
--   profiled patients: patients of that source and disease with at least one alteration or
--     marker reported (actionable or not): the denominator of the frequency.
--   frequency = n_patients / n_patients_profiled.

CREATE OR REPLACE TABLE marts.actionable_events AS
WITH alteration AS (
    SELECT
        molecular.source_id,
        molecular.patient_id,
        coalesce(patient.iccc3_subgroup, 'unknown') AS iccc3_subgroup,
        molecular.is_actionable,
        CASE molecular.alteration_type
            WHEN 'fusion' THEN 'fusion'
            WHEN 'surface_marker' THEN 'surface_marker'
            ELSE 'gene' END AS event_class,
        CASE molecular.alteration_type
            WHEN 'fusion' THEN coalesce(molecular.gene_symbol || '::' || molecular.partner_gene, molecular.alteration)
            WHEN 'surface_marker' THEN coalesce(molecular.alteration, molecular.gene_symbol)
            ELSE coalesce(molecular.gene_symbol, molecular.alteration) END AS event
    FROM core.molecular_alteration AS molecular
    LEFT JOIN marts.patient_summary AS patient USING (patient_id)
),

profiled AS (
    SELECT source_id, iccc3_subgroup, count(DISTINCT patient_id) AS n_patients_profiled
    FROM alteration
    GROUP BY ALL
),

actionable AS (
    SELECT
        source_id,
        iccc3_subgroup,
        event_class,
        coalesce(event, 'unknown') AS event,
        count(*) AS n_events,
        count(DISTINCT patient_id) AS n_patients
    FROM alteration
    WHERE is_actionable
    GROUP BY ALL
)

SELECT
    actionable.source_id,
    actionable.iccc3_subgroup,
    actionable.event_class,
    actionable.event,
    actionable.n_events,
    actionable.n_patients,
    profiled.n_patients_profiled,
    actionable.n_patients / profiled.n_patients_profiled AS frequency
FROM actionable
JOIN profiled USING (source_id, iccc3_subgroup)
ORDER BY source_id, iccc3_subgroup, event_class, n_patients DESC, event;

COMMENT ON TABLE marts.actionable_events IS 'Number and frequency of each actionable event (gene, fusion, surface marker) per source and disease (ICCC-3 subgroup).';
COMMENT ON COLUMN marts.actionable_events.source_id IS 'Source that reported the alterations.';
COMMENT ON COLUMN marts.actionable_events.iccc3_subgroup IS 'The patients'' disease: ICCC-3 subgroup of the first diagnosis; unknown when none is recorded. Codes: ICCC-3 subgroup.';
COMMENT ON COLUMN marts.actionable_events.event_class IS 'Kind of actionable event. Codes: gene / fusion / surface_marker.';
COMMENT ON COLUMN marts.actionable_events.event IS 'The event: HGNC gene symbol (gene), 5''::3'' gene pair (fusion, e.g. BCR::ABL1) or marker (surface_marker, e.g. CD19).';
COMMENT ON COLUMN marts.actionable_events.n_events IS 'Actionable alterations reported (a patient may have several reports). Unit: reports.';
COMMENT ON COLUMN marts.actionable_events.n_patients IS 'Patients with the event. Unit: patients.';
COMMENT ON COLUMN marts.actionable_events.n_patients_profiled IS 'Patients of the source and disease with at least one alteration or marker reported. Unit: patients.';
COMMENT ON COLUMN marts.actionable_events.frequency IS 'Share of profiled patients with the event, n_patients / n_patients_profiled. Unit: proportion (0-1).';
