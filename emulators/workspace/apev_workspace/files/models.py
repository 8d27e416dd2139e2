"""Files on Unity Catalog volumes, without HTTP: `/Volumes/<catalog>/<schema>/<volume>/...` on local disk.

Every call checks the caller's grants: `READ_VOLUME` to read or list, `WRITE_VOLUME` to write or delete
(with `USE_CATALOG` and `USE_SCHEMA` on the parents), as on Databricks.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apev_workspace.files.exceptions import (
    DirectoryNotEmpty,
    InvalidParameterValue,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from apev_workspace.identity.models import Principal
from apev_workspace.unity_catalog.models import UnityCatalog


@dataclass(frozen=True)
class VolumePath:
    volume: str  # catalog.schema.volume
    disk: Path
    path: str  # the normalised /Volumes/... path


def resolve(uc: UnityCatalog, path: str) -> VolumePath:
    """The volume and disk location of a `/Volumes/c/s/v/...` path; 404 when the volume does not exist."""
    clean = posixpath.normpath("/" + path.lstrip("/"))
    parts = clean.strip("/").split("/")
    if len(parts) < 4 or parts[0] != "Volumes":
        raise InvalidParameterValue(f"Invalid path {path}: expected /Volumes/<catalog>/<schema>/<volume>/...")
    volume = ".".join(parts[1:4])
    if volume not in uc.volumes:
        raise ResourceDoesNotExist(f"Volume '{volume}' does not exist.")
    return VolumePath(volume, uc.volume_path(volume).joinpath(*parts[4:]), clean)


class VolumeFiles:
    def __init__(self, uc: UnityCatalog) -> None:
        self.uc = uc

    def _resolve(self, who: Principal, path: str, privilege: str) -> VolumePath:
        target = resolve(self.uc, path)
        self.uc.authorize(who, "VOLUME", target.volume, privilege)
        return target

    def upload(self, who: Principal, path: str, content: bytes, overwrite: bool) -> None:
        target = self._resolve(who, path, "WRITE_VOLUME")
        if target.disk.is_dir():
            raise InvalidParameterValue(f"{target.path} is a directory")
        if target.disk.exists() and not overwrite:
            raise ResourceAlreadyExists(f"The file being created already exists: {target.path}")
        target.disk.parent.mkdir(parents=True, exist_ok=True)
        # write then rename, so a reader (or COPY INTO) never sees half a file
        fd, tmp = tempfile.mkstemp(dir=target.disk.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, target.disk)

    def file(self, who: Principal, path: str) -> Path:
        target = self._resolve(who, path, "READ_VOLUME")
        if not target.disk.is_file():
            raise ResourceDoesNotExist(f"The file does not exist: {target.path}")
        return target.disk

    def delete(self, who: Principal, path: str) -> None:
        target = self._resolve(who, path, "WRITE_VOLUME")
        if not target.disk.is_file():
            raise ResourceDoesNotExist(f"The file does not exist: {target.path}")
        target.disk.unlink()

    def mkdirs(self, who: Principal, path: str) -> None:
        target = self._resolve(who, path, "WRITE_VOLUME")
        if target.disk.is_file():
            raise ResourceAlreadyExists(f"A file exists at {target.path}")
        target.disk.mkdir(parents=True, exist_ok=True)

    def directory(self, who: Principal, path: str) -> Path:
        target = self._resolve(who, path, "READ_VOLUME")
        if not target.disk.is_dir():
            raise ResourceDoesNotExist(f"The directory does not exist: {target.path}")
        return target.disk

    def list(self, who: Principal, path: str) -> list[dict[str, Any]]:
        disk = self.directory(who, path)
        base = resolve(self.uc, path).path.rstrip("/")
        out = []
        for entry in sorted(disk.iterdir(), key=lambda p: p.name):
            if entry.name.startswith(".upload-"):
                continue
            stat = entry.stat()
            item: dict[str, Any] = {
                "path": f"{base}/{entry.name}" + ("/" if entry.is_dir() else ""),
                "name": entry.name,
                "is_directory": entry.is_dir(),
                "last_modified": int(stat.st_mtime * 1000),
            }
            if not entry.is_dir():
                item["file_size"] = stat.st_size
            out.append(item)
        return out

    def rmdir(self, who: Principal, path: str) -> None:
        target = self._resolve(who, path, "WRITE_VOLUME")
        if not target.disk.is_dir():
            raise ResourceDoesNotExist(f"The directory does not exist: {target.path}")
        if target.disk == self.uc.volume_path(target.volume):
            raise InvalidParameterValue("The root of a volume cannot be deleted through the Files API")
        if any(target.disk.iterdir()):
            raise DirectoryNotEmpty(f"The directory is not empty: {target.path}")
        shutil.rmtree(target.disk)
