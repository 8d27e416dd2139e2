"""apev_writeback."""
