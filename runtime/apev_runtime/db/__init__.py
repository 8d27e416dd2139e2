"""State: one async SQLAlchemy engine per service, inbox and outbox tables, Alembic migrations."""

from apev_runtime.db.engine import Database, create_database
from apev_runtime.db.tables import inbox, metadata, outbox

__all__ = ["Database", "create_database", "inbox", "metadata", "outbox"]
