"""The Markdown content beside the config: the front page's introduction, notes on layers and neurons,
pages of their own, and the image credits."""

from __future__ import annotations

from pathlib import Path

import markdown as md

from ..config import Config
from ..images import expand
from .sanitize import sanitize


def render_markdown(text: str, raw_html: bool = False) -> str:
    """Markdown as HTML, cut down to a safe subset (``sanitize.py``) unless ``raw_html``."""
    markup = md.markdown(text, extensions=["extra", "sane_lists"], output_format="html")
    return markup if raw_html else sanitize(markup)


def split_label(text: str) -> tuple[str, str]:
    """A note starting with '# Label' gives the neuron its label; the rest is its note."""
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("# "):
        return lines[0][2:].strip(), "\n".join(lines[1:]).strip()
    return "", text.strip()


class Content:
    """The content folder (the config's own folder)."""

    def __init__(self, root: Path, raw_html: bool = False):
        self.root = root
        self.raw_html = raw_html

    def note(self, *parts: str) -> tuple[str, str]:
        """(label, HTML) of the note at ``parts`` under the folder; empty strings if there is none."""
        path = self.root.joinpath(*parts)
        if path.is_file():
            label, text = split_label(path.read_text(encoding="utf-8"))
            return label, render_markdown(text, self.raw_html) if text else ""
        return "", ""

    def pages(self) -> list[tuple[str, str, str]]:
        """(file stem, title, HTML) of every Markdown page of its own: each ``NAME.md`` but the index and
        about pages' notes."""
        found = []
        for path in sorted(self.root.glob("*.md")):
            if path.name in ("index.md", "about.md"):
                continue
            label, text = split_label(path.read_text(encoding="utf-8"))
            found.append((path.stem, label or path.stem, render_markdown(text, self.raw_html)))
        return found


def credits(config: Config, used: set[str]) -> dict:
    """Each credit with the files it covers, and the ``used`` files that no credit covers."""
    credited, given = set(), []
    root = config.root.resolve()
    for index, credit in enumerate(config.credits):
        files = expand(credit.files, config.root, f"credits[{index}].files")
        names = [p.resolve().relative_to(root).as_posix() if p.resolve().is_relative_to(root) else p.name
                 for p in files]
        credited.update(names)
        given.append({"title": credit.title, "author": credit.author, "license": credit.license,
                        "source": credit.source, "files": names})
    return {"given": given, "uncredited": sorted(used - credited)}
