"""Markdown's HTML cut down to a safe subset, with the standard library's parser.

Notes and pages may come from collaborators, and Markdown passes raw HTML
through: without this, a note's ``<script>``, ``onmouseover=`` or
``javascript:`` link would run in every reader's browser.  An allow-list:
the tags Markdown (with its ``extra`` extension) writes, each with the
attributes it writes; links and images only to http(s), mailto (links) or
relative targets.  Everything else goes: script-like elements with their
content, other tags leaving their text, comments, every event handler.
``[site] raw_html = true`` skips this for an atlas whose notes have one
trusted author.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

TAGS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "em", "strong", "b", "i", "u", "s", "del", "ins",
        "code", "pre", "kbd", "samp", "blockquote", "ul", "ol", "li", "dl", "dt", "dd", "a", "img", "table",
        "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "sup", "sub", "abbr", "div", "span", "small",
        "figure", "figcaption"}
VOID = {"br", "hr", "img"}
DROPPED = {"script", "style", "iframe", "object", "embed", "template", "svg", "math", "noscript", "textarea",
           "select", "title", "frame", "frameset", "applet", "base", "link", "meta"}  # with their content
COMMON = {"id", "class", "title"}
ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt", "width", "height"}, "ol": {"start"}, "th": {"align", "style"},
              "td": {"align", "style"}, "abbr": set()}
URLS: dict[str, dict[str, tuple[str, ...]]] = {"a": {"href": ("http", "https", "mailto")},
                                              "img": {"src": ("http", "https")}}
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_ALIGN = re.compile(r"^\s*text-align:\s*(left|right|center)\s*;?\s*$")


def safe_url(value: str, schemes: tuple[str, ...]) -> bool:
    """Whether a link target is relative or of one of ``schemes`` (browsers ignore control characters and
    spaces inside a scheme, so they are ignored here too)."""
    compact = re.sub(r"[\x00-\x20\x7f]+", "", html.unescape(value)).lower()
    scheme = _SCHEME.match(compact)
    return scheme is None or scheme.group(1) in schemes


class _Cleaner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.dropping: list[str] = []  # inside an element dropped with its content

    def _attributes(self, tag: str, attrs: list[tuple[str, str | None]]) -> str:
        kept = []
        for name, value in attrs:
            name, value = name.lower(), value or ""
            if name not in COMMON | ATTRIBUTES.get(tag, set()):
                continue
            schemes = URLS.get(tag, {}).get(name)
            if (schemes is not None and not safe_url(value, schemes)) or (name == "style" and not _ALIGN.match(value)):
                continue
            kept.append(f' {name}="{html.escape(value, quote=True)}"')
        return "".join(kept)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.dropping or tag in DROPPED:
            if tag not in VOID and tag in DROPPED | set(self.dropping):
                self.dropping.append(tag)
            return
        if tag in TAGS:
            self.out.append(f"<{tag}{self._attributes(tag, attrs)}>")
            if tag not in VOID:
                self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.dropping and tag in TAGS:
            self.out.append(f"<{tag}{self._attributes(tag, attrs)}>" + ("" if tag in VOID else f"</{tag}>"))

    def handle_endtag(self, tag: str) -> None:
        if self.dropping:
            if tag == self.dropping[-1]:
                self.dropping.pop()
            return
        if tag in self.open:
            while self.open:
                closing = self.open.pop()
                self.out.append(f"</{closing}>")
                if closing == tag:
                    break

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.out.append(html.escape(data, quote=False))

    def close(self) -> None:
        super().close()
        self.out.extend(f"</{tag}>" for tag in reversed(self.open))
        self.open = []


def sanitize(markup: str) -> str:
    """``markup`` with only the allowed tags, attributes and link targets left."""
    cleaner = _Cleaner()
    cleaner.feed(markup)
    cleaner.close()
    return "".join(cleaner.out)
