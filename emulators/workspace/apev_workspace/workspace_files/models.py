"""The workspace tree without HTTP: metadata in the store, contents as files under `<data>/workspace_objects`.

Paths are normalised (a leading `/Workspace` is dropped, as Databricks accepts both spellings). Parents
must exist before an import, as on Databricks; `mkdirs` makes them. `/`, `/Users`, `/Shared` always exist,
and every user gets `/Users/<userName>` on first sight.
"""

from __future__ import annotations

import posixpath
import threading
import time
from pathlib import Path
from typing import Any

from apev_workspace.core.store import Store
from apev_workspace.workspace_files.exceptions import (
    DirectoryNotEmpty,
    InvalidParameterValue,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)

NOTEBOOK_HEADERS = {
    "# Databricks notebook source": "PYTHON",
    "-- Databricks notebook source": "SQL",
    "// Databricks notebook source": "SCALA",
}
EXTENSIONS = {"PYTHON": ".py", "SQL": ".sql", "SCALA": ".scala", "R": ".r"}


def normalize(path: str) -> str:
    if not path or not path.startswith("/"):
        raise InvalidParameterValue(f"Path ({path}) must be absolute, starting with /")
    if path == "/Workspace" or path.startswith("/Workspace/"):
        path = path[len("/Workspace") :] or "/"
    norm = posixpath.normpath(path)
    if ".." in norm.split("/"):
        raise InvalidParameterValue(f"Path ({path}) must not contain '..'")
    return "/" if norm in ("", "//") else norm


class WorkspaceFiles:
    def __init__(self, store: Store, lock: threading.RLock, root: Path) -> None:
        self._store = store
        self._lock = lock
        self._root = root
        root.mkdir(parents=True, exist_ok=True)
        self.objects: dict[str, dict[str, Any]] = store.load("ws_object")
        for base in ("/", "/Users", "/Shared"):
            if base not in self.objects:
                self._put_dir(base)

    def _put_dir(self, path: str) -> dict[str, Any]:
        now = int(time.time() * 1000)
        obj = {
            "path": path,
            "object_type": "DIRECTORY",
            "object_id": self._store.next_id("ws_object_id"),
            "created_at": now,
            "modified_at": now,
        }
        self.objects[path] = obj
        self._store.put("ws_object", path, obj)
        return obj

    def get(self, path: str) -> dict[str, Any]:
        path = normalize(path)
        with self._lock:
            obj = self.objects.get(path)
            if obj is None:
                raise ResourceDoesNotExist(f"Path ({path}) doesn't exist.")
            return dict(obj)

    def mkdirs(self, path: str) -> None:
        path = normalize(path)
        with self._lock:
            current = ""
            for part in [p for p in path.split("/") if p]:
                current = f"{current}/{part}"
                existing = self.objects.get(current)
                if existing is None:
                    self._put_dir(current)
                elif existing["object_type"] != "DIRECTORY":
                    raise ResourceAlreadyExists(f"Path ({current}) already exists and is not a directory.")

    def ensure_home(self, user_name: str) -> None:
        self.mkdirs(f"/Users/{user_name}")

    def import_(self, path: str, content: bytes, fmt: str, language: str | None, overwrite: bool) -> None:
        path = normalize(path)
        fmt = (fmt or "SOURCE").upper()
        if fmt not in ("SOURCE", "AUTO", "RAW"):
            raise InvalidParameterValue(f"Import format {fmt} is not supported by the local workspace")
        text_head = content[:64].decode("utf-8", "ignore").lstrip()
        header_lang = next((lang for h, lang in NOTEBOOK_HEADERS.items() if text_head.startswith(h)), None)
        if fmt == "SOURCE":
            if not language:
                raise InvalidParameterValue("The language field is required for SOURCE format.")
            object_type, lang = "NOTEBOOK", language.upper()
        elif fmt == "AUTO" and header_lang is not None:
            object_type, lang = "NOTEBOOK", header_lang
            ext = EXTENSIONS.get(lang, "")
            if path.lower().endswith(ext):
                path = path[: -len(ext)]
        else:
            object_type, lang = "FILE", None
        with self._lock:
            parent = posixpath.dirname(path)
            if self.objects.get(parent, {}).get("object_type") != "DIRECTORY":
                raise ResourceDoesNotExist(f"The parent folder ({parent}) does not exist.")
            existing = self.objects.get(path)
            if existing is not None and (not overwrite or existing["object_type"] == "DIRECTORY"):
                raise ResourceAlreadyExists(f"Path ({path}) already exists.")
            now = int(time.time() * 1000)
            obj: dict[str, Any] = {
                "path": path,
                "object_type": object_type,
                "object_id": existing["object_id"] if existing else self._store.next_id("ws_object_id"),
                "created_at": existing["created_at"] if existing else now,
                "modified_at": now,
                "size": len(content),
            }
            if lang:
                obj["language"] = lang
            blob = self._root / str(obj["object_id"])
            tmp = blob.with_suffix(".tmp")
            tmp.write_bytes(content)
            tmp.replace(blob)
            self.objects[path] = obj
            self._store.put("ws_object", path, obj)

    def read(self, path: str) -> tuple[dict[str, Any], bytes]:
        obj = self.get(path)
        if obj["object_type"] == "DIRECTORY":
            raise InvalidParameterValue(f"Path ({obj['path']}) is a directory; export a file or notebook")
        return obj, (self._root / str(obj["object_id"])).read_bytes()

    def materialize(self, directory: str, dest: Path, *, max_files: int = 2000, max_bytes: int = 64 << 20) -> int:
        """Copy the files and notebooks under a workspace folder into `dest` (a task's sources), bounded."""
        prefix = normalize(directory).rstrip("/") + "/"
        with self._lock:
            chosen = [o for p, o in self.objects.items() if p.startswith(prefix) and o["object_type"] != "DIRECTORY"]
        if len(chosen) > max_files or sum(o.get("size", 0) for o in chosen) > max_bytes:
            return 0
        for obj in chosen:
            target = dest / obj["path"][len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = self._root / str(obj["object_id"])
            if blob.exists():
                target.write_bytes(blob.read_bytes())
        return len(chosen)

    def list(self, path: str) -> list[dict[str, Any]]:
        obj = self.get(path)
        if obj["object_type"] != "DIRECTORY":
            return [obj]
        prefix = obj["path"].rstrip("/") + "/"
        with self._lock:
            return [
                dict(o)
                for p, o in sorted(self.objects.items())
                if p.startswith(prefix) and "/" not in p[len(prefix) :] and p != "/"
            ]

    def delete(self, path: str, recursive: bool) -> None:
        path = normalize(path)
        with self._lock:
            obj = self.objects.get(path)
            if obj is None:
                raise ResourceDoesNotExist(f"Path ({path}) doesn't exist.")
            if path in ("/", "/Users", "/Shared"):
                raise InvalidParameterValue(f"Path ({path}) cannot be deleted")
            prefix = path + "/"
            children = [p for p in self.objects if p.startswith(prefix)]
            if children and not recursive:
                raise DirectoryNotEmpty(f"Folder ({path}) is not empty. Use recursive=true to delete it.")
            for victim in [*children, path]:
                gone = self.objects.pop(victim)
                self._store.delete("ws_object", victim)
                (self._root / str(gone["object_id"])).unlink(missing_ok=True)
