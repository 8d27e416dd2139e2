"""apev_workspace."""
