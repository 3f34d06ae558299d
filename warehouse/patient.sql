-- core.patient: one row per linked person, rebuilt from core.patient_source and core.follow_up
-- after every load, so a person's row always reflects every source that knows them.
-- Merge rules: sex is the one known value all sources agree on (conflicts -> unknown);
-- birth year/month and country come from the first source (by source_id) that gives them;
-- a person is dead if any source says so (earliest death date), else the status at the
-- latest contact; last_contact_date is the latest contact in any source.

INSERT INTO core.patient BY NAME
WITH sources AS (
    SELECT
        patient_id,
        count(DISTINCT sex) FILTER (WHERE sex IS NOT NULL AND sex <> 'unknown') AS n_known_sex,
        min(sex) FILTER (WHERE sex IS NOT NULL AND sex <> 'unknown') AS known_sex,
        first(birth_year ORDER BY birth_year IS NULL, source_id) AS birth_year,
        first(birth_month ORDER BY birth_month IS NULL, source_id) AS birth_month,
        first(country ORDER BY country IS NULL, source_id) AS country,
        count(*) AS n_sources,
        first(source_id ORDER BY source_id, source_record_key) AS source_id,
        first(source_file_sha256 ORDER BY source_id, source_record_key) AS source_file_sha256,
        first(source_record_key ORDER BY source_id, source_record_key) AS source_record_key,
        first(run_id ORDER BY source_id, source_record_key) AS run_id
    FROM core.patient_source
    GROUP BY patient_id
),

contacts AS (
    SELECT
        patient_id,
        bool_or(vital_status = 'dead' OR death_date IS NOT NULL) AS has_died,
        min(death_date) AS death_date,
        max(contact_date) AS last_contact_date,
        arg_max(vital_status, contact_date) AS latest_vital_status
    FROM core.follow_up
    GROUP BY patient_id
)

SELECT
    sources.patient_id,
    CASE WHEN n_known_sex = 1 THEN known_sex ELSE 'unknown' END AS sex,
    birth_year,
    birth_month,
    country,
    CASE WHEN has_died THEN 'dead' ELSE coalesce(latest_vital_status, 'unknown') END AS vital_status,
    contacts.death_date,
    contacts.last_contact_date,
    n_sources,
    source_id,
    source_file_sha256,
    source_record_key,
    run_id
FROM sources
LEFT JOIN contacts USING (patient_id)
ORDER BY sources.patient_id;
