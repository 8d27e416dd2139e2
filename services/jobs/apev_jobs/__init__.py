"""apev_jobs."""
