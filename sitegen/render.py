"""Site model -> files: Jinja2 templates, one ``url`` filter, writes only what changed.

Autoescaping is on and undefined names are errors.  Every link goes through
``url``, which makes it relative to the page that holds it, so the site works
from ``file://`` and under any sub-path of a host.  Files this module wrote
before and no longer makes are removed; nothing else in the folder is touched.
One render (or clean) works in a folder at a time; another waits for it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import jinja2
from markupsafe import Markup

from .errors import SitegenError
from .site.model import SiteModel, ordinal
from .site.sheets import Member, Pic, encodable, made
from .store.cache import Cache, as_umask_allows, naming
from .store.locks import Lock

SHEET_ID = "sg-sheet"  # the ids of a page's sheets, numbered: unlike the ids pages and notes give headings
RECORD = ".sitegen-files"  # what sitegen wrote into the folder, one path a line
LOCK = ".sitegen-lock"  # held by the render or clean at work in the folder
TEMP = ".sitegen-tmp"  # the end of a file's name while it is being written
NAME_MAX = 255  # bytes of one name in a path, on the common file systems (ext4, XFS, APFS, NTFS)


def templates_dir() -> Path:
    """The templates shipped in the wheel, or the repository's ``templates/`` in a source checkout."""
    packaged = Path(__file__).parent / "_templates"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "templates"


def relative_url(target: str, page: str) -> str:
    """``target`` (a path from the site root) as seen from ``page`` (also from the site root)."""
    if "://" in target or target.startswith(("#", "mailto:")):
        return target
    path, _, fragment = target.partition("#")
    start = posixpath.dirname(page) or "."
    rel = posixpath.relpath(path, start) if path else posixpath.basename(page)
    return rel + (f"#{fragment}" if fragment else "")


def environment(templates: Path) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)

    @jinja2.pass_context
    def url(context, target: str) -> str:
        return relative_url(target, context["page_path"])

    env.filters["url"] = url

    @jinja2.pass_context
    def pic(context, picture: Pic | str, alt: str, cls: str = "", title: str = "", side: int | None = None
            ) -> Markup:
        """A picture of a sheet as an inline SVG showing its rectangle of the sheet (the sheet itself an
        ``image`` of the page's :func:`sheets`, used by reference), or a file of its own as an ``img``; ``alt``
        its text for those who cannot see it, ``title`` a tooltip, ``side`` its size in CSS pixels where the
        page sets it."""
        size = Markup(' width="{0}" height="{0}"').format(side) if side else ""
        tip = Markup(' title="{}"').format(title) if title else ""
        if isinstance(picture, str):
            return Markup('<img class="{}" src="{}" alt="{}"{}{} loading="lazy">').format(
                cls, relative_url(picture, context["page_path"]), alt, tip, size)
        used = context["page_sheets"]
        ident = used.setdefault(picture.sheet.path, (f"{SHEET_ID}{len(used)}", picture.sheet))[0]
        return Markup('<svg class="pic {}" viewBox="{} {} {} {}" role="img" aria-label="{}"{}>{}<use href="#{}"/>'
                      '</svg>').format(cls, picture.x, picture.y, picture.width, picture.height, alt, size,
                                       Markup("<title>{}</title>").format(title) if title else "", ident)

    @jinja2.pass_context
    def sheets(context) -> Markup:
        """The sheets the page's pictures show parts of, each once, for them to use: at the page's end, after
        every picture."""
        used = context["page_sheets"]
        if not used:
            return Markup("")
        images = Markup("").join(Markup('<image id="{}" href="{}" width="{}" height="{}"/>').format(
            ident, relative_url(sheet.path, context["page_path"]), sheet.width, sheet.height)
            for ident, sheet in used.values())
        return Markup('<svg class="sheets" aria-hidden="true"><defs>{}</defs></svg>').format(images)

    env.globals["pic"] = pic
    env.globals["sheets"] = sheets
    env.filters["num"] = lambda value: f"{value:.3g}"
    env.filters["pct"] = lambda value: f"{100 * value:.1f}%"
    env.filters["pct0"] = lambda value: f"{100 * value:.0f}%"
    env.filters["ordinal"] = ordinal
    env.filters["possessive"] = lambda name: Markup.escape(name) + Markup("'" if name.endswith("s") else "'s")
    return env


class Writer:
    """Writes files under ``out`` only when their bytes change, and remembers what it wrote.

    The record of what it will write is written first (:meth:`begin`), so a render that is interrupted, by
    Ctrl-C, SIGKILL or a full disk, leaves a folder that the next render takes over and ``clean`` empties.
    Each file goes to a temporary file of its own that is renamed over it.
    """

    def __init__(self, out: Path):
        self.out = out
        self.written: set[str] = set()
        self.changed = 0
        self.failed: list[str] = []  # what :meth:`finish` could not remove, with why

    def write(self, rel: str, data: bytes) -> None:
        target = self.out / rel
        self.written.add(rel)
        try:
            if target.read_bytes() == data:
                return
        except OSError:
            target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:64]}.", suffix=TEMP)
        try:
            as_umask_allows(handle)
            with naming(target), os.fdopen(handle, "wb") as raw:
                raw.write(data)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        self.changed += 1

    def previous(self) -> set[str]:
        """What an earlier render recorded; only plain paths inside the folder are trusted."""
        record = self.out / RECORD
        if not record.is_file():
            return set()
        root = self.out.resolve()
        return {rel for rel in record.read_text(encoding="utf-8", errors="replace").splitlines()
                if rel and not rel.startswith("/") and ".." not in rel.split("/") and writable_name(rel, NAME_MAX)
                and (root / rel).resolve().is_relative_to(root)}

    def _record(self, files: set[str]) -> None:
        handle, temp = tempfile.mkstemp(dir=self.out, prefix=f"{RECORD}.", suffix=TEMP)
        as_umask_allows(handle)
        with naming(self.out / RECORD), os.fdopen(handle, "w", encoding="utf-8") as record:
            record.write("".join(f"{rel}\n" for rel in sorted(files)))
        os.replace(temp, self.out / RECORD)

    def begin(self, planned: set[str]) -> None:
        """Record what this render will write (with what earlier ones wrote) before writing any of it, and
        remove what an interrupted render left half-written."""
        unfit = sorted(rel for rel in planned if not writable_name(rel))
        if unfit:  # the site model shortens names; this is the guard that keeps the record sound
            raise SitegenError(f"cannot write {unfit[0]!r}: a name in it is longer than a file system allows")
        self.out.mkdir(parents=True, exist_ok=True)
        self._record(self.previous() | planned)
        for folder, _, files in os.walk(self.out):  # does not follow links to folders
            for name in files:
                if name.endswith(TEMP):
                    Path(folder, name).unlink(missing_ok=True)

    def finish(self) -> int:
        """Remove what an earlier render wrote and this one did not; return how many."""
        stale = self.previous() - self.written
        kept = set()
        for rel in sorted(stale):
            path = self.out / rel
            try:
                path.unlink(missing_ok=True)
                parent = path.parent
                while parent != self.out and parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
            except OSError as error:
                self.failed.append(f"{rel}: {error.strerror or error}")
                kept.add(rel)
        self._record(self.written | kept)  # what could not be removed stays recorded, for the next try
        return len(stale) - len(kept)


def writable_name(rel: str, limit: int = NAME_MAX - 96) -> bool:
    """Whether every name along ``rel`` fits ``limit`` bytes: by default a file system's limit (255 bytes)
    with room for the temporary name a file is first written under; ``NAME_MAX`` for a name that can exist."""
    return all(len(part.encode("utf-8", "surrogateescape")) <= limit for part in rel.split("/"))


def check_out_dir(out: Path) -> None:
    """Refuse to write into a non-empty folder that sitegen did not make."""
    if out.exists() and (not out.is_dir() or (not (out / RECORD).is_file() and any(
            p.name != LOCK and not p.name.endswith(TEMP) for p in out.iterdir()))):  # another render's first steps
        raise SitegenError(f"output folder {str(out)!r} is not empty and was not made by sitegen; "
                           f"choose another --out or empty it")


@contextlib.contextmanager
def taken(out: Path, log: Callable[[str], None]) -> Iterator[Writer]:
    """The output folder, made if need be and locked against other renders and cleans while in use."""
    check_out_dir(out)
    while True:
        out.mkdir(parents=True, exist_ok=True)
        lock = Lock(out / LOCK)
        lock.take(lambda: log(f"waiting for another sitegen render into {out} to finish"))
        if lock.current():
            break
        lock.release()  # a clean removed the folder meanwhile: lock the new one
    try:
        check_out_dir(out)  # another render may have written into it meanwhile: it is still sitegen's
        yield Writer(out)
    finally:
        lock.release()


def planned_files(site: SiteModel, templates: Path) -> tuple[set[str], list[Path]]:
    """Every file a render of ``site`` writes, and the static files among them."""
    static = templates / "static"
    statics = [p for p in sorted(static.rglob("*")) if p.is_file()] if static.is_dir() else []
    names = {page.path for page in site.pages} | set(site.files) | {asset.path for asset in site.assets} | \
        {sheet.path for sheet in site.sheets}
    return names | {p.relative_to(templates).as_posix() for p in statics}, statics


def missing_entries(site: SiteModel, cache: Cache) -> list[str]:
    """The cache entries the site's files come from that are absent, are not what they say, or lack a member
    a file needs, as ``kind/key``: checked before anything is written, so a render never leaves half a site."""
    needed: dict[tuple[str, str], set[str]] = {}
    for asset in site.assets:
        needed.setdefault((asset.kind, asset.key), set()).add(asset.member)
    for sheet in site.sheets:
        for member in sheet.members:
            needed.setdefault((member.kind, member.key), set()).add(member.member)
    return [f"{kind}/{key}" for (kind, key), wanted in needed.items() if not wanted <= cache.names(kind, key)]


def _reader(cache: Cache) -> Callable[[Member], bytes]:
    """A member's bytes, the last entries read kept (a sheet draws on a few entries, its neighbours on the
    same ones)."""

    @functools.lru_cache(maxsize=64)
    def entry(kind: str, key: str) -> dict | None:
        return cache.get(kind, key)

    def read(member: Member) -> bytes:
        found = entry(member.kind, member.key)
        if found is None or member.member not in found:
            raise SitegenError(f"cache entry {member.kind}/{member.key} is missing or damaged; "
                               f"run `sitegen build` to compute it again")
        return found[member.member]

    return read


def render(site: SiteModel, out: str | Path, cache: Cache, templates: Path | None = None,
           log: Callable[[str], None] = print) -> dict[str, int]:
    """Write the site into ``out``; return counts of pages, assets, changed and removed files."""
    out = Path(out)
    templates = templates or templates_dir()
    env = environment(templates)
    missing = missing_entries(site, cache)
    if missing:
        raise SitegenError(f"{len(missing)} cache entr{'y is' if len(missing) == 1 else 'ies are'} missing or "
                           f"damaged ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); nothing was "
                           f"written: run `sitegen build` to compute them again")
    encodable(site.sheets)
    with taken(out, log) as writer:
        planned, statics = planned_files(site, templates)
        writer.begin(planned)
        for page in site.pages:
            context = dict(page.context, page_path=page.path, title=page.title, site_title=site.title,
                           nav=site.nav, provenance=site.provenance, page_sheets={})
            writer.write(page.path, env.get_template(page.template).render(context).encode("utf-8"))
        for path, data in site.files.items():
            writer.write(path, data)
        read = _reader(cache)
        for asset in site.assets:
            if asset.path not in writer.written:
                writer.write(asset.path, read(Member(asset.kind, asset.key, asset.member)))
        for sheet in site.sheets:
            writer.write(sheet.path, made(sheet, read, cache))
        for static in statics:
            writer.write(static.relative_to(templates).as_posix(), static.read_bytes())
        removed = writer.finish()
    for failure in writer.failed:
        log(f"could not remove {failure}")
    return {"pages": len(site.pages), "assets": len(writer.written) - len(site.pages),
            "changed": writer.changed, "removed": removed}


def clean(out: Path, log: Callable[[str], None] = print) -> int:
    """Remove the files a render recorded in ``out`` (also one that was interrupted), and the record; return
    how many existed."""
    if not (out / RECORD).is_file():
        return 0
    with taken(out, log) as writer:
        files = writer.previous()
        existing = sum((out / rel).is_file() for rel in files)
        writer.begin(set())  # removes half-written files too
        writer.finish()
        for failure in writer.failed:
            log(f"could not remove {failure}")
        if writer.failed:
            return existing - len(writer.failed)
        (out / RECORD).unlink(missing_ok=True)
        if [p.name for p in out.iterdir()] == [LOCK]:  # a render waiting on the lock sees it go and retries
            (out / LOCK).unlink()
            out.rmdir()
    return existing
