-- requires: financials
-- The monthly financial summary per location from NetSuite.
CREATE OR REPLACE TABLE gold.financial_summary
COMMENT 'Monthly revenue, expenses and net income per location (from silver.financials)'
AS SELECT
  practice_location,
  CAST(date_trunc('MONTH', period_start) AS DATE) AS month,
  CAST(sum(revenue) AS DECIMAL(18,2)) AS revenue,
  CAST(sum(expenses) AS DECIMAL(18,2)) AS expenses,
  CAST(sum(payroll_expense) AS DECIMAL(18,2)) AS payroll_expense,
  CAST(sum(supplies_expense) AS DECIMAL(18,2)) AS supplies_expense,
  CAST(sum(net_income) AS DECIMAL(18,2)) AS net_income,
  CAST(round(sum(net_income) / nullif(sum(revenue), 0), 4) AS DECIMAL(9,4)) AS net_margin,
  current_timestamp() AS _built_at
FROM silver.financials
GROUP BY 1, 2;
