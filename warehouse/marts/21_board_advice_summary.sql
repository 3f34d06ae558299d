-- marts.board_advice_summary: one row per ICCC-3 subgroup x recommendation year, plus the
-- totals per subgroup, per year and overall (breakdown says which; NULL in iccc3_subgroup or
-- recommendation_year means "all" and nothing else).
--
-- Unit: a board case, one submission of one patient to one board (patient, board, submission
-- date) with a recommendation date. A patient counts once per case; in the exports so far every
-- patient has one case, so cases are patients.
-- Definitions
--   advised: the board recommended a treatment (a review with recommendation_type other than none).
--   follow-up known: an advised case with at least one review whose advice_followed is recorded.
--   treated according to advice: a review of the case has advice_followed = true.
--   proportion_followed = n_followed / n_follow_known.
--   year: of the case's earliest recommendation date that can be true (marts.board_advice's
--     recommendation_year is known); cases without one are not counted yet.

CREATE OR REPLACE TABLE marts.board_advice_summary AS
WITH board_case AS (
    SELECT
        patient_id,
        board,
        submission_date,
        min(iccc3_subgroup) AS iccc3_subgroup,
        year(min(recommendation_date) FILTER (WHERE recommendation_year IS NOT NULL)) AS recommendation_year,
        bool_or(coalesce(recommendation_type, 'none') <> 'none') AS is_advised,
        bool_or(advice_followed IS NOT NULL) AS is_follow_known,
        coalesce(bool_or(advice_followed), false) AS is_followed
    FROM marts.board_advice
    GROUP BY patient_id, board, submission_date
    HAVING min(recommendation_date) FILTER (WHERE recommendation_year IS NOT NULL) IS NOT NULL
),

counted AS (
    SELECT
        CASE WHEN grouping(iccc3_subgroup) = 0 AND grouping(recommendation_year) = 0 THEN 'subgroup x year'
             WHEN grouping(iccc3_subgroup) = 0 THEN 'subgroup'
             WHEN grouping(recommendation_year) = 0 THEN 'year'
             ELSE 'overall' END AS breakdown,
        iccc3_subgroup,
        recommendation_year,
        count(*) AS n_cases,
        count(*) FILTER (WHERE is_advised) AS n_advised,
        count(*) FILTER (WHERE is_advised AND is_follow_known) AS n_follow_known,
        count(*) FILTER (WHERE is_advised AND is_follow_known AND is_followed) AS n_followed
    FROM board_case
    GROUP BY GROUPING SETS ((iccc3_subgroup, recommendation_year), (iccc3_subgroup), (recommendation_year), ())
)

SELECT
    breakdown,
    iccc3_subgroup,
    recommendation_year,
    n_cases,
    n_advised,
    n_follow_known,
    n_followed,
    n_follow_known - n_followed AS n_not_followed,
    CASE WHEN n_follow_known > 0 THEN n_followed / n_follow_known END AS proportion_followed
FROM counted
ORDER BY CASE breakdown WHEN 'subgroup x year' THEN 0 WHEN 'subgroup' THEN 1 WHEN 'year' THEN 2 ELSE 3 END,
         iccc3_subgroup, recommendation_year;

COMMENT ON TABLE marts.board_advice_summary IS 'Proportion of board cases treated according to the advice, per ICCC-3 subgroup and recommendation year, with totals per subgroup, per year and overall. A case is one submission of one patient to a board.';
COMMENT ON COLUMN marts.board_advice_summary.breakdown IS 'Which totals the row holds: NULL dimensions mean all. Codes: subgroup x year / subgroup / year / overall.';
COMMENT ON COLUMN marts.board_advice_summary.iccc3_subgroup IS 'The patients'' disease, ICCC-3 subgroup of the first diagnosis; NULL = all subgroups; unknown = no diagnosis recorded. Codes: ICCC-3 subgroup.';
COMMENT ON COLUMN marts.board_advice_summary.recommendation_year IS 'Calendar year of the case''s recommendation; NULL = all years. Unit: year.';
COMMENT ON COLUMN marts.board_advice_summary.n_cases IS 'Board cases with a recommendation. Unit: cases (patients).';
COMMENT ON COLUMN marts.board_advice_summary.n_advised IS 'Cases where the board advised a treatment (a recommendation other than none). Unit: cases (patients).';
COMMENT ON COLUMN marts.board_advice_summary.n_follow_known IS 'Advised cases for which it is recorded whether the advice was followed. Unit: cases (patients).';
COMMENT ON COLUMN marts.board_advice_summary.n_followed IS 'Advised cases treated according to one of the board''s advices. Unit: cases (patients).';
COMMENT ON COLUMN marts.board_advice_summary.n_not_followed IS 'Advised cases whose advice was not followed: n_follow_known - n_followed. Unit: cases (patients).';
COMMENT ON COLUMN marts.board_advice_summary.proportion_followed IS 'Proportion of cases treated according to advice, n_followed / n_follow_known. Unit: proportion (0-1).';
