"""Pages of their own: each ``NAME.md`` of the content folder becomes ``pages/NAME.html``."""

from __future__ import annotations

from ..atlas import Atlas
from ..links import safe_name
from ..model import Page


def build(atlas: Atlas) -> list[Page]:
    return [Page(f"pages/{safe_name(stem)}.html", "page.html", title, {"body": body})
            for stem, title, body in atlas.content.pages()]
