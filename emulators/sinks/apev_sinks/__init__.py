"""apev_sinks."""
