"""apev_stack."""
