"""The Files API on volumes through databricks-sdk (`w.files`), with volume grants enforced."""

from __future__ import annotations

import io

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import AlreadyExists, BadRequest, NotFound, PermissionDenied, ResourceAlreadyExists
from databricks.sdk.service import catalog

from apev_workspace.testing import RunningWorkspace

ROOT = "/Volumes/t/bronze/landing"


@pytest.fixture
def volume(w: WorkspaceClient) -> str:
    w.catalogs.create(name="t")
    w.schemas.create(name="bronze", catalog_name="t")
    w.volumes.create(catalog_name="t", schema_name="bronze", name="landing", volume_type=catalog.VolumeType.MANAGED)
    return ROOT


def test_upload_download_head_delete(w: WorkspaceClient, volume: str) -> None:
    path = f"{volume}/adp/2024-01-01/part-0.json"
    w.files.upload(path, io.BytesIO(b'{"id": 1}\n'), overwrite=True)
    assert w.files.download(path).contents.read() == b'{"id": 1}\n'
    assert w.files.get_metadata(path).content_length == 10
    with pytest.raises((AlreadyExists, ResourceAlreadyExists)):
        w.files.upload(path, io.BytesIO(b"again"), overwrite=False)
    w.files.upload(path, io.BytesIO(b'{"id": 2}\n'), overwrite=True)
    assert w.files.download(path).contents.read() == b'{"id": 2}\n'

    listed = list(w.files.list_directory_contents(f"{volume}/adp"))
    assert [(e.name, e.is_directory) for e in listed] == [("2024-01-01", True)]
    entries = list(w.files.list_directory_contents(f"{volume}/adp/2024-01-01"))
    assert [(e.path, e.file_size) for e in entries] == [(path, 10)]

    with pytest.raises(BadRequest):
        w.files.delete_directory(f"{volume}/adp/2024-01-01")  # not empty
    w.files.delete(path)
    with pytest.raises(NotFound):
        w.files.download(path)
    w.files.delete_directory(f"{volume}/adp/2024-01-01")
    w.files.create_directory(f"{volume}/empty/nested")
    w.files.get_directory_metadata(f"{volume}/empty/nested")
    with pytest.raises(NotFound):
        w.files.get_directory_metadata(f"{volume}/missing")
    with pytest.raises(NotFound):
        w.files.upload("/Volumes/t/bronze/nope/x.json", io.BytesIO(b"x"), overwrite=True)


def test_volume_privileges(w: WorkspaceClient, ws: RunningWorkspace, volume: str) -> None:
    sp = w.service_principals.create(display_name="pipeline")
    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=600)
    other = ws.client(token=token.token_value)
    w.files.upload(f"{volume}/a.json", io.BytesIO(b"{}"), overwrite=True)
    with pytest.raises(PermissionDenied):
        other.files.download(f"{volume}/a.json")
    w.grants.update(
        "catalog",
        "t",
        changes=[
            catalog.PermissionsChange(
                principal=sp.application_id,
                add=[catalog.Privilege.USE_CATALOG, catalog.Privilege.USE_SCHEMA, catalog.Privilege.READ_VOLUME],
            )
        ],
    )
    assert other.files.download(f"{volume}/a.json").contents.read() == b"{}"
    with pytest.raises(PermissionDenied):
        other.files.upload(f"{volume}/b.json", io.BytesIO(b"{}"), overwrite=True)
    w.grants.update(
        "volume",
        "t.bronze.landing",
        changes=[catalog.PermissionsChange(principal=sp.application_id, add=[catalog.Privilege.WRITE_VOLUME])],
    )
    other.files.upload(f"{volume}/b.json", io.BytesIO(b"{}"), overwrite=True)
    assert {e.name for e in other.files.list_directory_contents(volume)} == {"a.json", "b.json"}
