"""apev_monitor."""
