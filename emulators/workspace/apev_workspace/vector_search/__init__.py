"""Vector Search: endpoints and indexes (Delta Sync and Direct Access), exact search in DuckDB."""
