"""Get-or-create calls to the workspace (databricks-sdk, in worker threads) and to the MCP server.

Each function reads before it writes, so a step resumed after a failure half-way creates nothing twice;
`ResourceAlreadyExists` from a concurrent creator is treated as success.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Sequence
from typing import TypeVar

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, ResourceAlreadyExists
from databricks.sdk.service import catalog, sql
from databricks.sdk.service.workspace import AclPermission, ImportFormat

from apev_runtime.errors import PermanentError

T = TypeVar("T")


def _get_or_create(get: Callable[[], T], create: Callable[[], T]) -> tuple[T, bool]:
    """(the object, whether this call created it)."""
    try:
        return get(), False
    except NotFound:
        pass
    try:
        return create(), True
    except ResourceAlreadyExists:
        return get(), False


def ensure_catalog(w: WorkspaceClient, name: str, comment: str) -> bool:
    _, created = _get_or_create(lambda: w.catalogs.get(name), lambda: w.catalogs.create(name=name, comment=comment))
    return created


def ensure_schema(w: WorkspaceClient, catalog_name: str, schema: str, comment: str | None = None) -> bool:
    _, created = _get_or_create(
        lambda: w.schemas.get(f"{catalog_name}.{schema}"),
        lambda: w.schemas.create(name=schema, catalog_name=catalog_name, comment=comment),
    )
    return created


def ensure_volume(w: WorkspaceClient, catalog_name: str, schema: str, volume: str) -> bool:
    _, created = _get_or_create(
        lambda: w.volumes.read(f"{catalog_name}.{schema}.{volume}"),
        lambda: w.volumes.create(
            catalog_name=catalog_name, schema_name=schema, name=volume, volume_type=catalog.VolumeType.MANAGED
        ),
    )
    return created


def ensure_group(w: WorkspaceClient, name: str) -> str:
    """The group's id."""
    found = list(w.groups.list(filter=f'displayName eq "{name}"', attributes="id,displayName"))
    if found:
        return str(found[0].id)
    return str(w.groups.create(display_name=name).id)


def ensure_service_principal(w: WorkspaceClient, name: str) -> str:
    """The service principal's application id (what grants, ACLs and `run_as` name it by)."""
    found = list(w.service_principals.list(filter=f'displayName eq "{name}"'))
    sp = found[0] if found else w.service_principals.create(display_name=name)
    return str(sp.application_id)


Grant = tuple[str, str, str, Sequence[str]]  # (securable type, full name, principal, privileges)


def apply_grants(w: WorkspaceClient, grants: Sequence[Grant]) -> None:
    """Adding privileges already held is a no-op on Unity Catalog, so this is safe to resume."""
    for securable, full_name, principal, privileges in grants:
        change = catalog.PermissionsChange(principal=principal, add=[catalog.Privilege(p) for p in privileges])
        w.grants.update(securable, full_name, changes=[change])


def default_warehouse(w: WorkspaceClient) -> str:
    warehouses = list(w.warehouses.list())
    running = [x for x in warehouses if x.state == sql.State.RUNNING] or warehouses
    if not running:
        raise PermanentError("the workspace has no SQL warehouse; set DATABRICKS_WAREHOUSE_ID")
    return str(running[0].id)


def grant_can_use(
    w: WorkspaceClient, warehouse_id: str, *, groups: Sequence[str] = (), service_principals: Sequence[str] = ()
) -> None:
    """CAN_USE on the warehouse (PATCH: adds to what others were granted)."""
    level = sql.WarehousePermissionLevel.CAN_USE
    acl = [sql.WarehouseAccessControlRequest(group_name=g, permission_level=level) for g in groups]
    acl += [
        sql.WarehouseAccessControlRequest(service_principal_name=s, permission_level=level) for s in service_principals
    ]
    w.warehouses.update_permissions(warehouse_id, access_control_list=acl)


def ensure_secret_scope(w: WorkspaceClient, scope: str) -> bool:
    if any(s.name == scope for s in w.secrets.list_scopes()):
        return False
    try:
        w.secrets.create_scope(scope=scope)
    except ResourceAlreadyExists:
        return False
    return True


def secret_keys(w: WorkspaceClient, scope: str) -> set[str]:
    return {str(s.key) for s in w.secrets.list_secrets(scope=scope)}


def put_secret(w: WorkspaceClient, scope: str, key: str, value: str) -> None:
    w.secrets.put_secret(scope=scope, key=key, string_value=value)


def set_read_acl(w: WorkspaceClient, scope: str, principal: str) -> None:
    """READ for `principal`; every other entry but the service's own MANAGE is removed (pipeline only)."""
    me = w.current_user.me().user_name
    for acl in w.secrets.list_acls(scope=scope):
        if acl.principal not in (principal, me):
            w.secrets.delete_acl(scope=scope, principal=str(acl.principal))
    current = {a.principal: a.permission for a in w.secrets.list_acls(scope=scope)}
    if current.get(principal) != AclPermission.READ:
        w.secrets.put_acl(scope=scope, principal=principal, permission=AclPermission.READ)


def upload_file(w: WorkspaceClient, path: str, content: str) -> None:
    w.workspace.mkdirs(path.rsplit("/", 1)[0])
    w.workspace.import_(
        path=path, content=base64.b64encode(content.encode()).decode(), format=ImportFormat.AUTO, overwrite=True
    )


# ---------------------------------------------------------------------- removal (each: already gone = done)


def delete_folder(w: WorkspaceClient, path: str) -> int:
    """Delete every file under a volume folder and the folder itself; the number of files deleted."""
    try:
        entries = list(w.files.list_directory_contents(path))
    except NotFound:
        return 0
    deleted = 0
    for entry in entries:
        if entry.path is None:
            continue
        if entry.is_directory:
            deleted += delete_folder(w, entry.path)
            continue
        try:
            w.files.delete(entry.path)
            deleted += 1
        except NotFound:
            pass
    with contextlib.suppress(NotFound):
        w.files.delete_directory(path)
    return deleted


def drop_table(w: WorkspaceClient, full_name: str) -> bool:
    try:
        w.tables.delete(full_name)
    except NotFound:
        return False
    return True


def drop_catalog(w: WorkspaceClient, name: str) -> bool:
    """With `force`: its schemas, tables and volumes (and the files in them) go too."""
    try:
        w.catalogs.get(name)  # read before the write, like every call here
        w.catalogs.delete(name, force=True)
    except NotFound:
        return False
    return True


def delete_secret_scope(w: WorkspaceClient, scope: str) -> bool:
    if not any(s.name == scope for s in w.secrets.list_scopes()):
        return False
    try:
        w.secrets.delete_scope(scope)
    except NotFound:
        return False
    return True


def delete_group(w: WorkspaceClient, name: str) -> bool:
    found = list(w.groups.list(filter=f'displayName eq "{name}"', attributes="id,displayName"))
    for group in found:
        w.groups.delete(str(group.id))
    return bool(found)


def delete_service_principal(w: WorkspaceClient, name: str) -> bool:
    found = list(w.service_principals.list(filter=f'displayName eq "{name}"'))
    for sp in found:
        w.service_principals.delete(str(sp.id))
    return bool(found)


def walk_files(w: WorkspaceClient, folder: str) -> list[str]:
    """Every file under a volume folder (none when it does not exist)."""
    try:
        entries = list(w.files.list_directory_contents(folder))
    except NotFound:
        return []
    out: list[str] = []
    for entry in entries:
        if entry.path is None:
            continue
        out += walk_files(w, entry.path) if entry.is_directory else [entry.path]
    return out


# ---------------------------------------------------------------------- service principals' OAuth secrets


def service_principal_ids(w: WorkspaceClient, name: str) -> tuple[str, str] | None:
    """(SCIM id, application id) of the service principal with this display name, or None."""
    for sp in w.service_principals.list(filter=f'displayName eq "{name}"'):
        if sp.display_name == name and sp.id and sp.application_id:
            return str(sp.id), str(sp.application_id)
    return None


def create_sp_secret(w: WorkspaceClient, sp_id: str) -> tuple[str, str]:
    """A new OAuth secret of the service principal: (secret id, the secret, shown only now)."""
    made = w.service_principal_secrets_proxy.create(service_principal_id=sp_id)
    if not made.id or not made.secret:
        raise PermanentError(f"the workspace made an OAuth secret for service principal {sp_id} without id or value")
    return str(made.id), str(made.secret)


def sp_secrets(w: WorkspaceClient, sp_id: str) -> list[tuple[str, str]]:
    """(secret id, create time ISO 8601) of each OAuth secret of the service principal, oldest first."""
    listed = w.service_principal_secrets_proxy.list(service_principal_id=sp_id)
    found = [(str(s.id), str(s.create_time)) for s in listed]
    return sorted(found, key=lambda s: s[1])


def delete_sp_secret(w: WorkspaceClient, sp_id: str, secret_id: str) -> bool:
    try:
        w.service_principal_secrets_proxy.delete(service_principal_id=sp_id, secret_id=secret_id)
    except NotFound:
        return False
    return True


def delete_workspace_folder(w: WorkspaceClient, path: str) -> bool:
    """A workspace folder and everything in it (the task files rendered for a tenant or a data source)."""
    try:
        w.workspace.get_status(path)
        w.workspace.delete(path, recursive=True)
    except NotFound:
        return False
    return True


def revoke_warehouse_access(
    w: WorkspaceClient, warehouse_id: str, *, groups: Sequence[str] = (), service_principals: Sequence[str] = ()
) -> list[str]:
    """Remove these principals' direct entries from the warehouse's ACL (the others stay as they are); the
    principals whose entries were removed. The permissions API replaces the ACL as a whole, so the rest is
    read first and written back."""
    try:
        acl = w.warehouses.get_permissions(warehouse_id).access_control_list or []
    except NotFound:
        return []
    gone = set(groups) | set(service_principals)
    keep: list[sql.WarehouseAccessControlRequest] = []
    removed: list[str] = []
    for entry in acl:
        name = entry.group_name or entry.service_principal_name or entry.user_name or ""
        direct = [  # ownership is not an ACL entry one may write: it stays as it is
            p.permission_level
            for p in entry.all_permissions or []
            if not p.inherited and p.permission_level and p.permission_level != sql.WarehousePermissionLevel.IS_OWNER
        ]
        if name in gone:
            removed += [name] if direct else []
            continue
        keep += [
            sql.WarehouseAccessControlRequest(
                group_name=entry.group_name,
                service_principal_name=entry.service_principal_name,
                user_name=entry.user_name,
                permission_level=level,
            )
            for level in direct
        ]
    if removed:
        w.warehouses.set_permissions(warehouse_id, access_control_list=keep)
    return sorted(removed)
