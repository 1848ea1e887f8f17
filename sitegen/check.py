"""Every link and image of a built site resolves: files exist, fragments name an id, a picture of a sheet lies
inside it; and a built site against a static host's limits."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import Image

from .site.sheets import HEIGHT


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (attribute, value)
        self.ids: set[str] = set()
        self.repeated: set[str] = set()  # ids given to more than one element
        self.pictures: list[tuple[str, str]] = []  # a sheet's pictures: (the id of the sheet's image, viewBox)
        self.sheets: dict[str, tuple[str, str, str]] = {}  # id -> the sheet's (href, width, height)
        self._view = ""  # the viewBox of the svg being read

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                if value in self.ids:
                    self.repeated.add(value)
                self.ids.add(value)
            if value is not None and (name in ("href", "src") or (tag == "img" and name == "srcset")):
                self.links.append((f"{tag}[{name}]", value))
        values = dict(attrs)
        if tag == "svg":
            self._view = values.get("viewbox") or ""
        elif tag == "use" and self._view:
            self.pictures.append(((values.get("href") or "").removeprefix("#"), self._view))
        elif tag == "image" and values.get("id"):
            self.sheets[values["id"] or ""] = (values.get("href") or "", values.get("width") or "",
                                               values.get("height") or "")


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def check_site(site: str | Path) -> tuple[int, list[str]]:
    """Return (links checked, problems) for every HTML file under ``site``."""
    site = Path(site)
    if not (site / "index.html").is_file():
        return 0, [f"{site}: no index.html"]
    parsed: dict[Path, _Links] = {}
    sizes: dict[Path, tuple[int, int] | None] = {}  # of the sheets, read once
    problems, count = [], 0
    for page in sorted(site.rglob("*.html")):
        if page not in parsed:
            parsed[page] = _parse(page)
        links = parsed[page]
        for attribute, value in links.links:
            count += 1
            parts = urlsplit(value)
            if parts.scheme or value.startswith("//"):
                continue  # external: credits and sources, not checked offline
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page.resolve()
            where = f"{page.relative_to(site)}: {attribute}={value!r}"
            if not target.is_relative_to(site.resolve()):
                problems.append(f"{where} leaves the site")
            elif not target.is_file():
                problems.append(f"{where} does not exist")
            elif parts.fragment and target.suffix == ".html":
                if target not in parsed:
                    parsed[target] = _parse(target)
                if parts.fragment not in parsed[target].ids:
                    problems.append(f"{where}: no element with id {parts.fragment!r}")
        problems += _sheets(site, page, links, sizes)
    return count, problems


def _sheets(site: Path, page: Path, links: _Links, sizes: dict[Path, tuple[int, int] | None]) -> list[str]:
    """Each picture of a sheet that the page shows uses a sheet's image, whose id nothing else on the page has,
    and lies inside the sheet, whose size the page has right."""
    problems = [f"{page.relative_to(site)}: the id {ident!r} is given to more than one element"
                for ident in sorted(links.repeated)]
    for ident, view in links.pictures:
        if ident not in links.sheets:
            if ident in links.ids:  # a missing id is reported with the links
                problems.append(f"{page.relative_to(site)}: a picture uses #{ident}, which is not a sheet's image")
            continue
        href, width, height = links.sheets[ident]
        target = (page.parent / unquote(urlsplit(href).path)).resolve()
        if not target.is_file() or not target.is_relative_to(site.resolve()):
            continue  # reported with the links
        if target not in sizes:
            try:
                with Image.open(target) as sheet:
                    sizes[target] = sheet.size
            except OSError:
                sizes[target] = None
        size = sizes[target]
        if size is None:
            problems.append(f"{page.relative_to(site)}: {href} is not a picture")
            continue
        x, y, w, h = (float(v) for v in view.split())
        where = f"{page.relative_to(site)}: {href}"
        if (width, height) != (str(size[0]), str(size[1])):
            problems.append(f"{where} is {size[0]} x {size[1]} px, the page says {width} x {height}")
        elif x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
            problems.append(f"{where}: the picture at {view} lies outside it")
    return problems


MIB = 1024 * 1024


@dataclass(frozen=True)
class Host:
    """A static host's published limits (None: none published)."""

    title: str
    files: int | None  # files in one site
    size: int | None  # bytes in one site
    largest: int | None  # bytes in one file
    directories_count: bool = False  # whether folders count as files
    source: str = ""


HOSTS = {
    "github": Host("GitHub Pages", None, 10**9, 100 * MIB,
                   source="docs.github.com, GitHub Pages limits: a published site may be no larger than 1 GB; "
                          "git refuses a file over 100 MiB on push"),
    "gitlab": Host("GitLab Pages (gitlab.com)", 200_000, 10**9, None, directories_count=True,
                   source="gitlab.com Pages: 1 GB per site, 200,000 entries including folders"),
    "cloudflare": Host("Cloudflare Pages, free plan", 20_000, None, 25 * MIB,
                       source="developers.cloudflare.com/pages/platform/limits: 20,000 files, 25 MiB per file"),
    "cloudflare-paid": Host("Cloudflare Pages, paid plans", 100_000, None, 25 * MIB,
                            source="developers.cloudflare.com/pages/platform/limits: 100,000 files on paid plans "
                                   "(since January 2026), 25 MiB per file"),
}


# what a site's bytes are, by a file's path from the site root (its first match; the other checkpoint's
# atlas of a comparison, under before/, counted with this one's)
PARTS = (("pages", re.compile(r".*\.html")),
         ("neurons' own pictures", re.compile(r"(before/)?assets/layers/[^/]+/\d+[.~][^/]*")),
         ("layers' pictures", re.compile(r"(before/)?assets/layers/.*")),
         ("trees", re.compile(r"(before/)?assets/trees/.*")),
         ("manifest.json", re.compile(r"manifest\.json")))
OTHER = "other files"


@dataclass(frozen=True)
class Footprint:
    files: int
    directories: int
    size: int  # bytes, all files
    largest: tuple[int, str]  # bytes, and the file's path from the site root (with /)
    parts: dict[str, int] = field(default_factory=dict)  # bytes by what they are (PARTS), largest first


def part_of(path: str) -> str:
    """What a file is, by its path from the site root (PARTS)."""
    return next((name for name, pattern in PARTS if pattern.fullmatch(path)), OTHER)


def footprint(site: str | Path) -> Footprint:
    """What a built site holds: its files, folders and bytes, and its largest file (links are not followed:
    a host uploads what the folder holds)."""
    root = Path(site)
    files = directories = size = 0
    largest = (0, "")
    parts: dict[str, int] = {}
    for folder, names, filenames in os.walk(root):
        directories += len(names)
        for name in filenames:
            path = Path(folder) / name
            bytes_ = path.lstat().st_size
            files, size = files + 1, size + bytes_
            relative = path.relative_to(root).as_posix()
            part = part_of(relative)
            parts[part] = parts.get(part, 0) + bytes_
            if bytes_ > largest[0]:
                largest = (bytes_, relative)
    return Footprint(files, directories, size, largest, dict(sorted(parts.items(), key=lambda item: -item[1])))


def mb(bytes_: int) -> str:  # sites are limited in GB, files in MiB: each in its own unit
    return f"{bytes_ / 10**6:,.1f} MB"


def mib(bytes_: int) -> str:
    return f"{bytes_ / MIB:,.1f} MiB"


def against(used: Footprint, host: Host) -> list[tuple[bool, str]]:
    """One line per limit of the host: (within it, what the line says)."""
    entries = used.files + (used.directories if host.directories_count else 0)
    what = "files and folders" if host.directories_count else "files"
    lines = [(host.files is None or entries <= host.files,
              f"{what}: {entries:,}" + (f" of at most {host.files:,}" if host.files else " (no limit)")),
             (host.size is None or used.size <= host.size,
              f"site size: {mb(used.size)}" + (f" of at most {mb(host.size)}" if host.size else " (no limit)")),
             (host.largest is None or used.largest[0] <= host.largest,
              f"largest file: {mib(used.largest[0])} ({used.largest[1]})"
              + (f" of at most {mib(host.largest)}" if host.largest else " (no limit)"))]
    return [(ok, ("ok    " if ok else "OVER  ") + text) for ok, text in lines]


def where(used: Footprint) -> str:
    """Where a site's bytes are, largest part first."""
    if not used.size:
        return "its bytes: none"
    return "its bytes: " + ", ".join(f"{name} {mb(bytes_)} ({bytes_ / used.size:.0%})"
                                     for name, bytes_ in used.parts.items())


def advice(used: Footprint, host: Host) -> list[str]:
    """For each of the host's limits the site is over (:func:`against`: files, size, largest file), the
    settings of its config that bring it within."""
    within = [ok for ok, _ in against(used, host)]
    fewer = "map fewer neurons ([layers] neurons), or publish some layers as an atlas of their own"
    out = []
    if not within[0]:
        what = "files and folders" if host.directories_count else "files"
        out.append(f"to have fewer {what}: each mapped neuron is a page and one or two sheets of pictures; {fewer}")
    if not within[1]:
        out.append("to make it smaller: lower [site] quality (the AVIF sheets'), show fewer featured images "
                   "([images] featured: each adds pictures and edge lists to every neuron's page), fewer top "
                   "patches ([compute] top_k and percentiles), fewer methods ([compute] methods, or per layer "
                   f"[layers] methods) or fewer trees ([trees] layers and roots); or {fewer}")
    if not within[2]:
        largest = used.largest[1]
        out.append(f"to make {largest} smaller: " + (
            f"it holds a record of every mapped neuron; {fewer}" if largest in ("manifest.json", "search-index.js")
            else f"sitegen's sheets of pictures are at most {HEIGHT:,} px tall, wider only where one picture is (an "
                 "optimized image of a large [optimize] size); a file sitegen did not write can be taken out of "
                 "the site's folder"))
    return out
