-- requires: payroll_runs, employees
-- Payroll per location and month (by pay date) from ADP, with the location's active head count and its largest
-- payroll run of the month (the record an insight about the month's payroll points at).
-- No salary, SSN or date of birth: only aggregates of payroll runs and a count of employees.
CREATE OR REPLACE TABLE gold.payroll_summary
COMMENT 'Monthly payroll per location (from silver.payroll_runs and silver.employees)'
AS WITH runs AS (
  SELECT
    practice_location,
    CAST(date_trunc('MONTH', pay_date) AS DATE) AS month,
    count(*) AS payroll_runs,
    sum(gross_pay) AS gross_pay,
    sum(net_pay) AS net_pay,
    sum(taxes_withheld) AS taxes_withheld,
    max_by(payroll_run_id, gross_pay) AS largest_run_id
  FROM silver.payroll_runs
  GROUP BY 1, 2
), staff AS (
  SELECT practice_location, count(*) AS active_employees
  FROM silver.employees
  WHERE employment_status = 'active'
  GROUP BY 1
)
SELECT
  r.practice_location,
  r.month,
  CAST(r.payroll_runs AS BIGINT) AS payroll_runs,
  CAST(r.gross_pay AS DECIMAL(18,2)) AS gross_pay,
  CAST(r.net_pay AS DECIMAL(18,2)) AS net_pay,
  CAST(r.taxes_withheld AS DECIMAL(18,2)) AS taxes_withheld,
  CAST(coalesce(s.active_employees, 0) AS BIGINT) AS active_employees,
  r.largest_run_id,
  current_timestamp() AS _built_at
FROM runs AS r
LEFT JOIN staff AS s ON s.practice_location = r.practice_location;
