-- marts.survival_km: one row per origin x endpoint x grouping x group x distinct time: the
-- Kaplan-Meier step function with its 95% confidence interval.
--
-- Input: kaplan_meier_steps, a frame etl/load/survival.py computes from marts.survival as
-- lifelines' KaplanMeierFitter does, bit for bit (exponential Greenwood interval, i.e. on the
-- log(-log) scale), and etl/load/marts.py registers on the connection just before this file
-- runs. Patients whose time is NULL in marts.survival are left out. Time 0 is the first row of
-- every curve.

CREATE OR REPLACE TABLE marts.survival_km AS
SELECT
    CAST(origin AS VARCHAR) AS origin,
    CAST(endpoint AS VARCHAR) AS endpoint,
    CAST(grouping AS VARCHAR) AS grouping,
    CAST(group_value AS VARCHAR) AS group_value,
    CAST(time_days AS DOUBLE) AS time_days,
    CAST(n_at_risk AS INTEGER) AS n_at_risk,
    CAST(n_events AS INTEGER) AS n_events,
    CAST(n_censored AS INTEGER) AS n_censored,
    CAST(survival AS DOUBLE) AS survival,
    CAST(ci_lower AS DOUBLE) AS ci_lower,
    CAST(ci_upper AS DOUBLE) AS ci_upper
FROM kaplan_meier_steps
ORDER BY origin, endpoint, grouping, group_value, time_days;

COMMENT ON TABLE marts.survival_km IS 'Kaplan-Meier estimates of overall and event-free survival per origin and group, one row per distinct time, with 95% confidence intervals (exponential Greenwood, as lifelines).';
COMMENT ON COLUMN marts.survival_km.origin IS 'Time zero, as in marts.survival. Codes: relapse / enrolment / recommendation / diagnosis.';
COMMENT ON COLUMN marts.survival_km.endpoint IS 'Overall or event-free survival. Codes: OS / EFS.';
COMMENT ON COLUMN marts.survival_km.grouping IS 'What the patients are grouped by. Codes: all / iccc3_group / advice_group.';
COMMENT ON COLUMN marts.survival_km.group_value IS 'The group: all, an ICCC-3 main group, or, for the origin recommendation only, an advice group (followed / not_followed).';
COMMENT ON COLUMN marts.survival_km.time_days IS 'Time since the origin at which the estimate steps. Unit: days.';
COMMENT ON COLUMN marts.survival_km.n_at_risk IS 'Patients still at risk just before this time. Unit: patients.';
COMMENT ON COLUMN marts.survival_km.n_events IS 'Events at this time. Unit: patients.';
COMMENT ON COLUMN marts.survival_km.n_censored IS 'Patients censored at this time. Unit: patients.';
COMMENT ON COLUMN marts.survival_km.survival IS 'Kaplan-Meier estimate of the probability to be event-free beyond this time. Unit: proportion (0-1).';
COMMENT ON COLUMN marts.survival_km.ci_lower IS 'Lower bound of the 95% confidence interval (exponential Greenwood). Unit: proportion (0-1).';
COMMENT ON COLUMN marts.survival_km.ci_upper IS 'Upper bound of the 95% confidence interval (exponential Greenwood). Unit: proportion (0-1).';
