"""Every link and image of a built site resolves: files exist, fragments name an id."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (attribute, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if value is not None and (name in ("href", "src") or (tag == "img" and name == "srcset")):
                self.links.append((f"{tag}[{name}]", value))


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
    return count, problems
