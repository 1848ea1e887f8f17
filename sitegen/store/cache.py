"""The content-addressed cache: the only code that touches the cache folder.

An entry is one zip file of named members: ``.npy`` arrays (read with
``allow_pickle=False``) and encoded images; the kinds of entries and the
names of their members are in ``members.py``.  Its key hashes exactly the
inputs of the stage that made it (DESIGN §3); where an entry holds one member
per neuron, neurons computed later are added to it, under a lock, so two
processes adding to one entry keep both's members.  Writes go to a temporary
file that is then renamed over the target, so an entry is whole or absent.

Every entry names its own kind, key and compute version (its ``entry.json``),
and readers may say what shapes and types its arrays must have.  An entry that
fails any check (a damaged zip, whose per-member CRC fails; one copied over
another; arrays of another shape) is removed with a warning and reads as a
miss, so it is computed again.

The folder is marked as a cache (``CACHEDIR.TAG``, which backup tools also
honour) when sitegen first writes to it; ``sitegen clean --cache-too``
deletes nothing without it.  Reads never write: a read-only cache serves a
build with nothing to compute.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .locks import held, slot

# Bump when a change to the compute code changes what it produces.
COMPUTE_VERSION = 4
ENTRY = "entry.json"  # the member that names the entry
MARKER = "CACHEDIR.TAG"
MARKER_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
               "# This folder is a sitegen cache (format {version}): computed results, made again on demand.\n")
LOCKS = "locks"  # the folder of lock files
MANIFESTS = "manifests"

# what a reader expects of an entry's arrays: member name (or a glob of names) -> (shape, dtype kind); in a
# shape None matches any length and a ... first or last any further axes there; the kind is numpy's ('f'
# float, 'i' signed integer; "" any)
Expect = Mapping[str, tuple[tuple, str]]


def as_umask_allows(handle: int) -> None:
    """Give a file made by ``tempfile.mkstemp`` (readable by its owner alone) the mode that ``open`` would:
    a site must be readable by the web server, a shared cache by the group."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(handle, 0o666 & ~mask)


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError raised while ``path`` is written (a full disk, say, which names no file) names it."""
    try:
        yield
    except OSError as error:
        if error.filename is None and error.errno is not None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def make_key(*parts: Any) -> str:
    """A hash of ``parts`` (anything JSON can write) and the compute version."""
    text = json.dumps([COMPUTE_VERSION, *parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def manifest_name(config_path: Path, root: Path) -> str:
    """Where the manifest of the config at ``config_path`` lives inside the cache at ``root``: named by the
    config's path relative to the cache, so an atlas folder holding its cache can move."""
    relative = os.path.relpath(Path(config_path).resolve(), Path(root).resolve())
    digest = hashlib.sha256(Path(relative).as_posix().encode()).hexdigest()[:16]
    return f"{MANIFESTS}/{digest}.json"


def is_cache(root: Path) -> bool:
    """Whether ``root`` carries the mark of a sitegen cache."""
    try:
        return "sitegen cache" in (root / MARKER).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _mismatch(array: np.ndarray, shape: tuple, kind: str) -> str | None:
    """Why ``array`` is not of ``shape`` (None: any length; ``...`` first or last: any further axes there) and
    dtype ``kind`` ("": any), or None."""
    dims = [e for e in shape if e is not Ellipsis]
    if shape and shape[0] is Ellipsis:
        got = array.shape[max(0, len(array.shape) - len(dims)):]
    elif shape and shape[-1] is Ellipsis:
        got = array.shape[:len(dims)]
    else:
        got = array.shape
    if len(got) != len(dims) or any(e is not None and e != s for s, e in zip(got, dims)):
        wanted = ", ".join("..." if e is Ellipsis else "any" if e is None else str(e) for e in shape)
        return f"shape {tuple(array.shape)}, expected ({wanted})"
    if kind and array.dtype.kind != kind:
        return f"type {array.dtype}, expected kind {kind!r}"
    return None


class Cache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.warnings: list[str] = []  # entries found wrong and removed, in words
        self._marked = False

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.zip"

    def _reject(self, kind: str, key: str, why: str) -> None:
        """Remove an entry that fails a check, and say so (a read-only cache keeps it: it stays a miss)."""
        path = self.path(kind, key)
        self.warnings.append(f"cache entry {kind}/{key} {why}: removed, and computed again")
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass

    def _open(self, kind: str, key: str) -> zipfile.ZipFile | None:
        """The entry's zip, checked to be this entry; None if it is absent or not."""
        try:
            archive = zipfile.ZipFile(self.path(kind, key))
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - a damaged file fails in zipfile or zlib in many ways
            self._reject(kind, key, "is damaged")
            return None
        try:
            label = json.loads(archive.read(ENTRY))
            why = None if label == {"kind": kind, "key": key, "version": COMPUTE_VERSION} else (
                f"holds {label.get('kind')}/{label.get('key')} of version {label.get('version')}"
                if isinstance(label, dict) else "does not name itself")
        except KeyError:
            why = "does not name itself"
        except Exception:  # noqa: BLE001 - a damaged label
            why = "is damaged"
        if why:
            archive.close()
            self._reject(kind, key, why)
            return None
        return archive

    def names(self, kind: str, key: str) -> set[str]:
        """The names of the entry's members (empty if it is absent or fails its checks)."""
        archive = self._open(kind, key)
        if archive is None:
            return set()
        with archive:
            return set(archive.namelist()) - {ENTRY}

    def has(self, kind: str, key: str) -> bool:
        return bool(self.names(kind, key))

    def get(self, kind: str, key: str, arrays_only: bool = False, expect: Expect | None = None
            ) -> dict[str, Any] | None:
        """The entry's members (arrays for ``.npy`` names, bytes otherwise; with ``arrays_only``, its arrays
        alone), or None if it is absent or fails a check: a damaged member, or an array that ``expect``
        describes otherwise."""
        archive = self._open(kind, key)
        if archive is None:
            return None
        members: dict[str, Any] = {}
        try:
            with archive:
                for name in archive.namelist():
                    if name == ENTRY or (arrays_only and not name.endswith(".npy")):
                        continue
                    data = archive.read(name)  # checks the CRC
                    members[name] = np.load(io.BytesIO(data), allow_pickle=False) if name.endswith(".npy") else data
        except Exception:  # noqa: BLE001 - as above: any failure to read an entry is a miss
            self._reject(kind, key, "is damaged")
            return None
        for pattern, (shape, dtype_kind) in (expect or {}).items():
            for name in fnmatch.filter(members, pattern):
                why = _mismatch(members[name], shape, dtype_kind)
                if why:
                    self._reject(kind, key, f"has {name} of {why}")
                    return None
        return members

    def add(self, kind: str, key: str, members: dict[str, Any]) -> None:
        """Add members to an entry (creating it), keeping the ones it has, also those another process adds
        meanwhile."""
        self._mark()
        with held(slot(self.root / LOCKS / "entries", f"{kind}/{key}")):
            old = self.get(kind, key) or {}
            self.put(kind, key, {**old, **members})

    def put(self, kind: str, key: str, members: dict[str, Any]) -> None:
        self._mark()
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".zip")
        try:
            as_umask_allows(handle)
            with naming(path), os.fdopen(handle, "wb") as raw, \
                    zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as archive:
                archive.writestr(ENTRY, json.dumps({"kind": kind, "key": key, "version": COMPUTE_VERSION}))
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

    def _mark(self) -> None:
        """Mark the folder as a sitegen cache before the first thing is written to it."""
        if self._marked:
            return
        if not is_cache(self.root):
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / MARKER).write_text(MARKER_TEXT.format(version=COMPUTE_VERSION), encoding="utf-8")
        self._marked = True

    def write_json(self, name: str, data: Any) -> Path:
        """Write a named JSON document (the manifest) atomically, unless it already holds ``data``."""
        path = self.root / name
        text = json.dumps(data, indent=1, sort_keys=True)
        try:
            if path.read_text(encoding="utf-8") == text:
                return path
        except OSError:
            pass
        self._mark()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            as_umask_allows(handle)
            with naming(path), os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return path

    def read_json(self, name: str) -> Any | None:
        """A named JSON document; None if there is none, ValueError if it is damaged (cut short, say)."""
        path = self.root / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ValueError(f"{path} could not be read ({error.strerror or error})") from None
        try:
            return json.loads(text)
        except ValueError as error:
            raise ValueError(f"{path} is damaged ({error})") from None
