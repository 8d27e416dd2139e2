"""Workspace objects: directories, files and notebooks under `/`, as `/api/2.0/workspace/*` sees them."""
