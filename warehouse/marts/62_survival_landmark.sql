-- marts.survival_landmark: one row per origin x endpoint x grouping x group x landmark (1, 2,
-- 3 and 5 years): survival at fixed times, the form in which survival is published.
--
-- Input: kaplan_meier_landmarks, a frame etl/load/survival.py computes from marts.survival
-- and etl/load/marts.py registers on the connection just before this file runs. A landmark is
-- round(years * 365.25) days; the estimate is the Kaplan-Meier step at or before it. Once nobody
-- is at risk any more it is NULL when the last observation was censored (the curve is not defined
-- beyond the last follow-up), and 0 when it was an event that took the last patient (the curve
-- reached 0 and stays there, as lifelines gives it; its interval is 0 to 0).

CREATE OR REPLACE TABLE marts.survival_landmark AS
SELECT
    CAST(origin AS VARCHAR) AS origin,
    CAST(endpoint AS VARCHAR) AS endpoint,
    CAST(grouping AS VARCHAR) AS grouping,
    CAST(group_value AS VARCHAR) AS group_value,
    CAST(years AS INTEGER) AS years,
    CAST(time_days AS INTEGER) AS time_days,
    CAST(n_patients AS INTEGER) AS n_patients,
    CAST(n_at_risk AS INTEGER) AS n_at_risk,
    CAST(survival AS DOUBLE) AS survival,
    CAST(ci_lower AS DOUBLE) AS ci_lower,
    CAST(ci_upper AS DOUBLE) AS ci_upper
FROM kaplan_meier_landmarks
ORDER BY origin, endpoint, grouping, group_value, years;

COMMENT ON TABLE marts.survival_landmark IS 'Kaplan-Meier survival at 1, 2, 3 and 5 years per origin, endpoint and group, with 95% confidence intervals (exponential Greenwood, as lifelines).';
COMMENT ON COLUMN marts.survival_landmark.origin IS 'Time zero, as in marts.survival. Codes: relapse / enrolment / recommendation / diagnosis.';
COMMENT ON COLUMN marts.survival_landmark.endpoint IS 'Overall or event-free survival. Codes: OS / EFS.';
COMMENT ON COLUMN marts.survival_landmark.grouping IS 'What the patients are grouped by. Codes: all / iccc3_group / advice_group.';
COMMENT ON COLUMN marts.survival_landmark.group_value IS 'The group: all, an ICCC-3 main group, or, for the origin recommendation only, an advice group (followed / not_followed).';
COMMENT ON COLUMN marts.survival_landmark.years IS 'Landmark time. Unit: years.';
COMMENT ON COLUMN marts.survival_landmark.time_days IS 'Landmark time, round(years * 365.25). Unit: days.';
COMMENT ON COLUMN marts.survival_landmark.n_patients IS 'Patients in the group with a known time. Unit: patients.';
COMMENT ON COLUMN marts.survival_landmark.n_at_risk IS 'Patients followed for at least time_days without an event. Unit: patients.';
COMMENT ON COLUMN marts.survival_landmark.survival IS 'Kaplan-Meier estimate of survival at the landmark; NULL when nobody is at risk and the last observation was censored (0 once an event took the last patient). Unit: proportion (0-1).';
COMMENT ON COLUMN marts.survival_landmark.ci_lower IS 'Lower bound of the 95% confidence interval (exponential Greenwood). Unit: proportion (0-1).';
COMMENT ON COLUMN marts.survival_landmark.ci_upper IS 'Upper bound of the 95% confidence interval (exponential Greenwood). Unit: proportion (0-1).';
