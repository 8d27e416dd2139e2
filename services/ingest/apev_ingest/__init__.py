"""The ingest service: owns Unity Catalog layout and MCP ingestion."""
