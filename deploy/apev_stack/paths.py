"""Where the local stack keeps its state (per checkout) and its downloads (per machine)."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout this launcher belongs to (deploy/apev_stack/ is two levels down)."""
    return Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    """Pid files, broker data and logs of what `make` started: `<repo>/.stack`, or `APEV_STATE_DIR`."""
    return Path(os.environ.get("APEV_STATE_DIR", repo_root() / ".stack"))


def cache_dir() -> Path:
    """Downloads shared by every checkout on this machine: `~/.cache/apev`, or `APEV_CACHE_DIR`.

    Kept outside the checkout so a fresh clone (and CI) reuses the Kafka jars fetched before.
    """
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "apev"
    return Path(os.environ.get("APEV_CACHE_DIR", default))
