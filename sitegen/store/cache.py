"""The content-addressed cache: the only code that touches the cache folder.

An entry is one zip file of named members: ``.npy`` arrays (read with
``allow_pickle=False``) and encoded images; the kinds of entries and the
names of their members are in ``members.py``.  Its key hashes exactly the
inputs of the stage that made it (DESIGN §3); where an entry holds one member
per neuron, neurons computed later are added to it.  Writes go to a temporary
file that is then renamed over the target, so an entry is whole or absent;
zip's per-member CRC catches a damaged one, which is removed and reads as a
miss, so it is computed again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# Bump when a change to the compute code changes what it produces.
COMPUTE_VERSION = 2


def make_key(*parts: Any) -> str:
    """A hash of ``parts`` (anything JSON can write) and the compute version."""
    text = json.dumps([COMPUTE_VERSION, *parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def manifest_name(config_path: Path) -> str:
    """Where the manifest of the config at ``config_path`` lives inside the cache."""
    digest = hashlib.sha256(str(Path(config_path).resolve()).encode()).hexdigest()[:16]
    return f"manifests/{digest}.json"


class Cache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.damaged: list[Path] = []

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.zip"

    def _damaged(self, path: Path) -> None:
        self.damaged.append(path)
        path.unlink(missing_ok=True)

    def names(self, kind: str, key: str) -> set[str]:
        """The names of the entry's members (empty if it is absent or unreadable)."""
        path = self.path(kind, key)
        try:
            with zipfile.ZipFile(path) as archive:
                return set(archive.namelist())
        except FileNotFoundError:
            return set()
        except Exception:  # noqa: BLE001 - a damaged file fails in zipfile, zlib or numpy in many ways
            self._damaged(path)
            return set()

    def has(self, kind: str, key: str) -> bool:
        return bool(self.names(kind, key))

    def get(self, kind: str, key: str, arrays_only: bool = False) -> dict[str, Any] | None:
        """The entry's members (arrays for ``.npy`` names, bytes otherwise; with ``arrays_only``, its arrays
        alone), or None if absent or damaged."""
        path = self.path(kind, key)
        try:
            with zipfile.ZipFile(path) as archive:
                members = {}
                for name in archive.namelist():
                    if arrays_only and not name.endswith(".npy"):
                        continue
                    data = archive.read(name)  # checks the CRC
                    members[name] = np.load(io.BytesIO(data), allow_pickle=False) if name.endswith(".npy") else data
                return members
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - as above: any failure to read an entry is a miss
            self._damaged(path)
            return None

    def add(self, kind: str, key: str, members: dict[str, Any]) -> None:
        """Add members to an entry (creating it), keeping the ones it has."""
        old = self.get(kind, key) or {}
        self.put(kind, key, {**old, **members})

    def put(self, kind: str, key: str, members: dict[str, Any]) -> None:
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".zip")
        try:
            with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as archive:
                for name, value in members.items():
                    if isinstance(value, np.ndarray):
                        buffer = io.BytesIO()
                        np.save(buffer, value, allow_pickle=False)
                        archive.writestr(name, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
                    else:
                        archive.writestr(name, value)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def write_json(self, name: str, data: Any) -> Path:
        """Write a named JSON document (the manifest) atomically."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(temp, path)
        return path

    def read_json(self, name: str) -> Any | None:
        try:
            return json.loads((self.root / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
