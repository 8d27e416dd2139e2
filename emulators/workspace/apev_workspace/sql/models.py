"""The SQL area: system tables, the DuckDB engine, warehouses and statements, wired together."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apev_workspace.core.store import Store
from apev_workspace.identity.models import Principal
from apev_workspace.sql.engine import Engine
from apev_workspace.sql.session import Backend, Result, Session
from apev_workspace.sql.statements import Statements
from apev_workspace.sql.system import SystemTables
from apev_workspace.sql.warehouses import Warehouses
from apev_workspace.unity_catalog.models import UnityCatalog

log = logging.getLogger("apev_workspace.sql")
StatementListener = Callable[[dict[str, Any]], object]


class Sql:
    def __init__(
        self,
        store: Store,
        lock: threading.RLock,
        uc: UnityCatalog,
        data_dir: Path,
        public_url: Callable[[], str],
    ) -> None:
        self.system_tables = SystemTables()
        self.engine = Engine(data_dir, self.system_tables, readable=[uc.volumes_root])
        self.uc = uc
        uc.engine = self.engine
        self.engine.attach_all(uc.catalogs)
        self.backend = Backend(uc, self.engine, store)
        self.warehouses = Warehouses(store, lock, public_url)
        self.statements = Statements(self.backend, self.warehouses, self.statement_ended)
        # called after every statement (API or sql_task) with {warehouse_id, started, ended (epoch ms),
        # tags, cluster_size, run_as}: billing turns warehouse busy time into usage
        self.listeners: list[StatementListener] = []

    def session(self, who: Principal, catalog: str | None = None, schema: str | None = None) -> Session:
        return Session(self.backend, who, catalog, schema)

    def run(self, who: Principal, text: str, catalog: str | None = None, schema: str | None = None) -> Result:
        """Run a script as `who` (white-box tests, other areas); raises SqlError when it fails."""
        return self.session(who, catalog, schema).run_script(text)

    def statement_ended(self, warehouse_id: str, started: int, ended: int, who: Principal) -> None:
        item = self.warehouses.items.get(warehouse_id) or {}
        event = {
            "warehouse_id": warehouse_id,
            "started": started,
            "ended": ended,
            "tags": dict(item.get("tags") or {}),
            "cluster_size": item.get("cluster_size") or "2X-Small",
            "run_as": who.name,
        }
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("statement listener failed")

    def close(self) -> None:
        self.statements.shutdown()
        self.engine.close()
