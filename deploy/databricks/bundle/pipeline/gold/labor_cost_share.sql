-- requires: payroll_runs, production_kpis
-- Cross-source: ADP gross pay as a share of practice-management collections, per location and month
-- (months present in both sources only).
CREATE OR REPLACE TABLE gold.labor_cost_share
COMMENT 'Gross payroll / collections per location and month (silver.payroll_runs x silver.production_kpis)'
AS WITH payroll AS (
  SELECT practice_location, CAST(date_trunc('MONTH', pay_date) AS DATE) AS month, sum(gross_pay) AS gross_pay
  FROM silver.payroll_runs
  GROUP BY 1, 2
), collections AS (
  SELECT practice_location, CAST(date_trunc('MONTH', kpi_date) AS DATE) AS month, sum(total_collections) AS collections
  FROM silver.production_kpis
  GROUP BY 1, 2
)
SELECT
  p.practice_location,
  p.month,
  CAST(p.gross_pay AS DECIMAL(18,2)) AS gross_pay,
  CAST(c.collections AS DECIMAL(18,2)) AS collections,
  CAST(round(p.gross_pay / nullif(c.collections, 0), 4) AS DECIMAL(9,4)) AS labor_cost_share,
  current_timestamp() AS _built_at
FROM payroll AS p
JOIN collections AS c ON c.practice_location = p.practice_location AND c.month = p.month;
