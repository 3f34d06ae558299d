-- marts.trial_enrolment_reasons: one row per follow-up month (3, 6, 9, ...) x trial enrolment
-- status x reason: why patients were or were not enrolled in trials, as the physician answered
-- at each 3-monthly follow-up (core.follow_up.trial_enrolment_status / _reason).
--
-- Definitions
--   contact: a follow-up contact of a living patient at which the trial question was answered
--     (trial_enrolment_status not NULL); other contacts are not counted.
--   follow-up month: the planned visit the contact answers: months since the patient's first
--     enrolment in a study of the same source, rounded to the nearest multiple of 3 (a visit
--     every 3 months = 91.3 days; a contact before 1.5 months counts as month 3). NULL when
--     the enrolment or contact date is unknown or the contact comes before the enrolment.
--   reason: the physician's reason code; not_given when the status was answered but not the reason.
--   share_of_status: n_contacts / the contacts of the month with the same status.

CREATE OR REPLACE TABLE marts.trial_enrolment_reasons AS
WITH enrolment AS (
    SELECT source_id, patient_id, min(enrolment_date) AS enrolment_date
    FROM core.study_enrolment
    GROUP BY ALL
),

contact AS (
    SELECT
        follow_up.patient_id,
        follow_up.trial_enrolment_status,
        coalesce(follow_up.trial_enrolment_reason, 'not_given') AS trial_enrolment_reason,
        CASE WHEN follow_up.contact_date >= enrolment.enrolment_date
             THEN greatest(3, 3 * CAST(round((follow_up.contact_date - enrolment.enrolment_date) / (365.25 / 4))
                                       AS INTEGER)) END AS follow_up_month
    FROM core.follow_up AS follow_up
    LEFT JOIN enrolment USING (source_id, patient_id)
    WHERE follow_up.trial_enrolment_status IS NOT NULL
),

counted AS (
    SELECT
        follow_up_month,
        trial_enrolment_status,
        trial_enrolment_reason,
        count(*) AS n_contacts,
        count(DISTINCT patient_id) AS n_patients
    FROM contact
    GROUP BY ALL
)

SELECT
    follow_up_month,
    trial_enrolment_status,
    trial_enrolment_reason,
    n_contacts,
    n_patients,
    n_contacts / sum(n_contacts) OVER (PARTITION BY follow_up_month, trial_enrolment_status) AS share_of_status
FROM counted
ORDER BY follow_up_month NULLS LAST, trial_enrolment_status, n_contacts DESC, trial_enrolment_reason;

COMMENT ON TABLE marts.trial_enrolment_reasons IS 'Why patients were or were not enrolled in clinical trials, by 3-monthly follow-up visit: the physician''s reasons given at each follow-up contact (the target board registry asks at every visit).';
COMMENT ON COLUMN marts.trial_enrolment_reasons.follow_up_month IS 'The 3-monthly visit: months since the first enrolment in the source''s study, rounded to the nearest multiple of 3 (at least 3); NULL when a date is unknown or the contact precedes the enrolment. Unit: months.';
COMMENT ON COLUMN marts.trial_enrolment_reasons.trial_enrolment_status IS 'Whether the patient was enrolled in a trial at the contact. Codes: enrolled / not_enrolled.';
COMMENT ON COLUMN marts.trial_enrolment_reasons.trial_enrolment_reason IS 'The physician''s reason (codes of core.follow_up.trial_enrolment_reason), or not_given.';
COMMENT ON COLUMN marts.trial_enrolment_reasons.n_contacts IS 'Follow-up contacts with this status and reason at this visit. Unit: contacts.';
COMMENT ON COLUMN marts.trial_enrolment_reasons.n_patients IS 'Distinct patients among those contacts. Unit: patients.';
COMMENT ON COLUMN marts.trial_enrolment_reasons.share_of_status IS 'n_contacts / the visit''s contacts with the same status. Unit: proportion (0-1).';
