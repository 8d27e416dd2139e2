"""apev_ingest."""
