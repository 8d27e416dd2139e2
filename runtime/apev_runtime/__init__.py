"""apev_runtime."""
