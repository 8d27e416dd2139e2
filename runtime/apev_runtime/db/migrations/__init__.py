"""Alembic migrations of the runtime's tables, run programmatically by `apev_runtime.db.migrate`."""
