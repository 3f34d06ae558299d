-- Functions the marts in warehouse/marts/ share, created as temporary macros on the connection
-- that builds them (etl/load/marts.py), so the published warehouse holds none of them.
--
-- wilson_lower(p, n) / wilson_upper(p, n): the Wilson score 95% confidence interval of a
-- proportion p of n (z = 1.959963984540054, the 97.5th percentile of the normal distribution).
-- Unlike p +/- z * se it stays within 0-1 and is usable for the small groups of rare tumours.
-- NULL when n is 0 or NULL. Exactly 0 at p = 0 and 1 at p = 1, as the formula is (rounding gave
-- -1.9e-17 in a published CSV).
CREATE OR REPLACE TEMP MACRO wilson_lower(p, n) AS CASE
    WHEN p = 0 AND n > 0 THEN 0.0
    WHEN n > 0 AND p IS NOT NULL THEN greatest(0.0,  -- greatest and least skip a NULL
    (p + 1.959963984540054 * 1.959963984540054 / (2 * n)
       - 1.959963984540054 * sqrt(p * (1 - p) / n + 1.959963984540054 * 1.959963984540054 / (4 * n * n)))
    / (1 + 1.959963984540054 * 1.959963984540054 / n)) END;
CREATE OR REPLACE TEMP MACRO wilson_upper(p, n) AS CASE
    WHEN p = 1 AND n > 0 THEN 1.0
    WHEN n > 0 AND p IS NOT NULL THEN least(1.0,
    (p + 1.959963984540054 * 1.959963984540054 / (2 * n)
       + 1.959963984540054 * sqrt(p * (1 - p) / n + 1.959963984540054 * 1.959963984540054 / (4 * n * n)))
    / (1 + 1.959963984540054 * 1.959963984540054 / n)) END;

-- response_rank(response): the order of responses, best first, by which a line's best overall
-- response is chosen when sources or treatments of the line give several: CR, CRi, MLFS, PR (the
-- RECIST and leukaemia responses, complete before partial), SD, NR, PD, then NE and a missing response
-- (not evaluable: chosen only when nothing else was assessed).
CREATE OR REPLACE TEMP MACRO response_rank(response) AS
    coalesce(list_position(['CR', 'CRi', 'MLFS', 'PR', 'SD', 'NR', 'PD'], response), 8);

-- not_evaluable(response): NE or missing, the last of response_rank's order.
CREATE OR REPLACE TEMP MACRO not_evaluable(response) AS response_rank(response) = 8;
