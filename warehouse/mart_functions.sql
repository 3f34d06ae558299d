-- Functions the marts in warehouse/marts/ share, created as temporary macros on the connection
-- that builds them (etl/load/marts.py), so the published warehouse holds none of them.
--
-- wilson_lower(p, n) / wilson_upper(p, n): the Wilson score 95% confidence interval of a
-- proportion p of n (z = 1.959963984540054, the 97.5th percentile of the normal distribution).
-- Unlike p +/- z * se it stays within 0-1 and is usable for the small groups of rare tumours.
-- NULL when n is 0 or NULL.
CREATE OR REPLACE TEMP MACRO wilson_lower(p, n) AS
    (p + 1.959963984540054 * 1.959963984540054 / (2 * n)
       - 1.959963984540054 * sqrt(p * (1 - p) / n + 1.959963984540054 * 1.959963984540054 / (4 * n * n)))
    / (1 + 1.959963984540054 * 1.959963984540054 / n);
CREATE OR REPLACE TEMP MACRO wilson_upper(p, n) AS
    (p + 1.959963984540054 * 1.959963984540054 / (2 * n)
       + 1.959963984540054 * sqrt(p * (1 - p) / n + 1.959963984540054 * 1.959963984540054 / (4 * n * n)))
    / (1 + 1.959963984540054 * 1.959963984540054 / n);
