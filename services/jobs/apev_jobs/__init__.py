"""The jobs service: owns the Databricks Jobs API 2.2."""
