"""The shared tenant settings loader: merge, reload on change, a broken file keeps the last good one."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from apev_runtime.tenants import TenantDirectory


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: str = "auto"
    threshold: float = 0.7


class View(BaseModel):
    model_config = ConfigDict(extra="ignore")
    budget: int = 0
    policy: Policy = Policy()


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    stamp = time.time() + 1  # a new modification time even within the file system's resolution
    os.utime(path, (stamp, stamp))


def test_defaults_tenant_overrides_and_nested_merge(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    _write(
        path,
        "defaults: {budget: 100, policy: {default: hold, threshold: 0.5}, other: x}\n"
        "tenants:\n  acme: {budget: 250, policy: {threshold: 0.9}}\n",
    )
    tenants = TenantDirectory(path, View, nested=("policy",))
    assert tenants.get("acme") == View(budget=250, policy=Policy(default="hold", threshold=0.9))
    assert tenants.get("unknown") == View(budget=100, policy=Policy(default="hold", threshold=0.5))
    assert tenants.tenants() == ["acme"]
    flat = TenantDirectory(path, View)  # without `nested`, the tenant's policy replaces the defaults' whole
    assert flat.get("acme").policy == Policy(default="auto", threshold=0.9)


def test_reload_on_change_and_a_broken_file_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    tenants = TenantDirectory(path, View)
    assert tenants.get("acme") == View()  # no file: defaults of the model
    _write(path, "tenants: {acme: {budget: 5}}\n")
    assert tenants.get("acme").budget == 5
    _write(path, "tenants: {acme: {budget: 7}}\n")
    assert tenants.get("acme").budget == 7
    _write(path, "tenants: {acme: {policy: {unknown_key: 1}}}\n")  # invalid for the view
    assert tenants.get("acme").budget == 7
    _write(path, "tenants: [not, a, mapping\n")  # not YAML
    assert tenants.get("acme").budget == 7
