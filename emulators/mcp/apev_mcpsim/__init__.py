"""apev_mcpsim."""
