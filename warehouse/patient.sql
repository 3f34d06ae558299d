-- core.patient: one row per linked person, derived after every load (again for the persons whose
-- core rows changed) from every core record of the person, so a person's row always reflects
-- every source that knows them and every core row's patient_id is in core.patient, even when its
-- source's registration (patient_source) was held back (the rule XT-PATIENT-KNOWN flags those records).
-- Input: temporary views etl/load/warehouse.py makes before this file runs, over the persons to
-- derive (all, or those whose core rows changed; their rows are deleted first): patient_record,
-- patient_id and lineage of every row of every core table with a patient_id (from the DDL);
-- patient_registration, their rows of core.patient_source; patient_contact, of core.follow_up;
-- patient_alive_on, the dates they were alive on (a contact saying so, a diagnosis, a treatment's start).
-- And the macro period_end of warehouse/rule_functions.sql: the last day a partial date can be; export_now of
-- warehouse/export_now.sql: the day of the export a row's record is in now.
-- Merge rules: sex is the one known value all registrations agree on (conflicts -> unknown);
-- birth year/month and country come from the first registration (by source_id, record key) that gives them,
-- and are unknown for a person no registration reached core for; a person is dead if any source
-- says so, else the status at the latest contact; last_contact_date is the latest contact in any source.
-- The death date is the one that must have come first (the earliest last day it can be; of equal ones,
-- the most precise). One known only to its month or year is placed in the middle of the days it can be
-- on: after the person was last alive in its period, and not after the export it is in now (an
-- unbiased guess for survival times; its first day would make a death in "2019" of a child diagnosed
-- in May come before the diagnosis). death_date_precision keeps what the source gave. Lineage cites the first registration (by source_id), else the
-- person's first record of any table.

INSERT INTO core.patient BY NAME
WITH registrations AS (
    SELECT
        patient_id,
        count(DISTINCT sex) FILTER (WHERE sex IS NOT NULL AND sex <> 'unknown') AS n_known_sex,
        min(sex) FILTER (WHERE sex IS NOT NULL AND sex <> 'unknown') AS known_sex,
        arg_min(birth_year, (source_id, source_record_key)) AS birth_year,  -- arg_min skips a NULL value
        arg_min(birth_month, (source_id, source_record_key)) AS birth_month,
        arg_min(country, (source_id, source_record_key)) AS country,
        min({'source_id': source_id, 'source_record_key': source_record_key,
             'source_file_sha256': source_file_sha256, 'run_id': run_id}) AS lineage
    FROM patient_registration
    GROUP BY patient_id
),

records AS (  -- every person with a core record, and the sources that know them
    SELECT
        patient_id,
        count(DISTINCT source_id) AS n_sources,
        min({'source_id': source_id, 'source_record_key': source_record_key,
             'source_file_sha256': source_file_sha256, 'run_id': run_id}) AS lineage
    FROM patient_record
    GROUP BY patient_id
),

contacts AS (
    SELECT
        patient_id,
        bool_or(vital_status = 'dead' OR death_date IS NOT NULL) AS has_died,
        max(contact_date) AS last_contact_date,
        arg_max(vital_status, (contact_date, source_id, source_record_key))  -- ties: the last record
            FILTER (WHERE contact_date IS NOT NULL) AS latest_vital_status
    FROM patient_contact
    GROUP BY patient_id
),

deaths AS (  -- each death a source gives: the days it can be on
    SELECT
        contact.patient_id,
        contact.death_date AS first_day,
        -- Not after the export it is in now, nor before its first day (an export dated before it); least skips a
        -- NULL: an export whose date is not known bounds nothing.
        greatest(contact.death_date, least(period_end(contact.death_date, contact.death_date_precision),
                                           file.exported_on)) AS last_day,
        coalesce(contact.death_date_precision, 'day') AS precision
    FROM patient_contact AS contact
    LEFT JOIN export_now() AS file USING (source_id, source_file_sha256)
    WHERE contact.death_date IS NOT NULL
),

death AS (
    SELECT
        patient_id,
        arg_min({'first_day': first_day, 'last_day': last_day, 'precision': precision},
                (last_day, CASE precision WHEN 'day' THEN 0 WHEN 'month' THEN 1 ELSE 2 END, first_day)) AS given
    FROM deaths
    GROUP BY patient_id
),

placed_death AS (
    SELECT
        death.patient_id,
        death.given.precision AS death_date_precision,
        CASE WHEN death.given.precision = 'day' THEN death.given.first_day
             ELSE greatest(death.given.first_day, max(alive.alive_on)) END AS after,
        death.given.last_day AS before
    FROM death
    LEFT JOIN patient_alive_on AS alive
        ON alive.patient_id = death.patient_id AND alive.alive_on <= death.given.last_day
    GROUP BY death.patient_id, death.given
)

SELECT
    records.patient_id,
    CASE WHEN registrations.n_known_sex = 1 THEN registrations.known_sex ELSE 'unknown' END AS sex,
    registrations.birth_year,
    registrations.birth_month,
    registrations.country,
    CASE WHEN has_died THEN 'dead' ELSE coalesce(latest_vital_status, 'unknown') END AS vital_status,
    placed_death.after + ((placed_death.before - placed_death.after) // 2)::INTEGER AS death_date,
    placed_death.death_date_precision,
    contacts.last_contact_date,
    records.n_sources,
    unnest(coalesce(registrations.lineage, records.lineage))  -- its four columns
FROM records
LEFT JOIN registrations USING (patient_id)
LEFT JOIN contacts USING (patient_id)
LEFT JOIN placed_death USING (patient_id)
ORDER BY records.patient_id;
