"""apev_serving."""
