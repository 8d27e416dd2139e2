-- requires: production_kpis
-- Production, collections, collection rate and visits per location and month, from a practice-management
-- source (DentalIntel, Eaglesoft, Dentrix).
CREATE OR REPLACE TABLE gold.monthly_kpis
COMMENT 'Monthly practice KPIs per location (from silver.production_kpis)'
AS SELECT
  practice_location,
  CAST(date_trunc('MONTH', kpi_date) AS DATE) AS month,
  CAST(sum(total_production) AS DECIMAL(18,2)) AS production,
  CAST(sum(total_collections) AS DECIMAL(18,2)) AS collections,
  CAST(round(sum(total_collections) / nullif(sum(total_production), 0), 4) AS DECIMAL(9,4)) AS collection_rate,
  CAST(sum(patient_visits) AS BIGINT) AS visits,
  CAST(sum(new_patients) AS BIGINT) AS new_patients,
  current_timestamp() AS _built_at
FROM silver.production_kpis
GROUP BY 1, 2;
