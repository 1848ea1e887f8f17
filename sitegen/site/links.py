"""Where every page and asset of the site lives, as paths from the site root.

Pages link with these paths; the ``url`` filter of the templates makes each
relative to the page that holds it.  :class:`Assets` names each file copied
from the cache and remembers where it comes from.
"""

from __future__ import annotations

import hashlib
import re

from ..images import NAME_LIMIT, fit_name
from ..store import members
from ..store.manifest import FeaturedRecord, OptimizedRecord, PatchRecord, TreeNode
from .model import Asset


def safe_name(text: str) -> str:
    return fit_name(re.sub(r"[^A-Za-z0-9._-]", "_", text) or "_")


def layer_url(layer: str, part: int = 0) -> str:
    """A layer's page, or its ``part``-th page of tiles after the first (a layer of many neurons)."""
    return f"layers/{safe_name(layer)}.html" if part == 0 else f"layers/{safe_name(layer)}/part-{part + 1}.html"


def neuron_url(layer: str, neuron: int) -> str:
    return f"layers/{safe_name(layer)}/{neuron}.html"


def class_url(name: str) -> str:
    """A class of a labelled probe set: the neurons most selective for it.  A name that is not safe as a
    file name as it is gets a short hash of itself, so that two such names never share a page."""
    safe = safe_name(name)
    if safe != name:
        safe = fit_name(safe[:NAME_LIMIT - 9] + "-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8])
    return f"classes/{safe}.html"


def image_url(slug: str) -> str:
    return f"images/{slug}.html"


def node_id(path: list[TreeNode]) -> str:
    """The anchor of a tree node on its image's page, from its path (a part by its first channel: a node's
    parts share none)."""
    return fit_name("n-" + "-".join(f"{safe_name(node.layer)}-g{min(edge.neuron for edge in node.group)}"
                                    if node.group else f"{safe_name(node.layer)}-{node.neuron}" for node in path))


class Assets:
    """Collects the files the pages show; each method returns the file's path from the site root.  A
    ``prefix`` keeps another atlas's files apart (the other checkpoint's of a comparison, under "before/")."""

    def __init__(self, prefix: str = "") -> None:
        self.listed: list[Asset] = []
        self.prefix = prefix

    def _add(self, path: str, kind: str, key: str, member: str) -> str:
        path = self.prefix + path
        self.listed.append(Asset(path, kind, key, member))
        return path

    def photo(self, featured: FeaturedRecord) -> str:
        return self._add(f"assets/photos/{featured.slug}.jpg", members.PHOTOS, featured.photo, members.PHOTO)

    def picture(self, featured: FeaturedRecord, layer: str, neuron: int, method: str, part: str = "") -> str:
        """A gradient picture of the whole image, or (``part`` "box") cut to the receptive field, or
        (``part`` "img") the photo cut to the same box."""
        member = {"": members.picture, "box": members.picture_zoom, "img": members.photo_zoom}[part](neuron)
        suffix = f"-{part}" if part else ""
        return self._add(f"assets/vis/{safe_name(layer)}/{neuron}/{featured.slug}-{method}{suffix}.webp",
                         members.PICTURES, featured.pictures[layer][method], member)

    def patch(self, layer: str, neuron: int, patch: PatchRecord, which: str) -> str:
        """A patch's photo (``which`` "img") or its guided-backprop picture ("gb")."""
        if which == "img":  # one file per view and box, whichever neurons show it
            member = members.patch_photo(patch.box)
            return self._add(f"assets/patches/{safe_name(layer)}/views/{patch.item}-{member}", members.PATCHES,
                             patch.key, member)
        name = patch.rank if patch.rank is not None else f"p{patch.percentile:g}"
        return self._add(f"assets/patches/{safe_name(layer)}/{neuron}/{name}-gb.webp", members.PATCHES, patch.key,
                         members.patch_guided(neuron))

    def activation_map(self, featured: FeaturedRecord, layer: str, neuron: int) -> str:
        return self._add(f"assets/maps/{safe_name(layer)}/{neuron}/{featured.slug}.webp", members.MAPS,
                         featured.maps[layer], members.activation_map(neuron))

    def tree_node(self, featured: FeaturedRecord, path: list[TreeNode], which: str) -> str:
        """A tree node's path picture (``which`` "picture") or the photo of the same box ("photo")."""
        member = members.NODE_PICTURE if which == "picture" else members.NODE_PHOTO
        return self._add(f"assets/trees/{featured.slug}/{node_id(path)}-{which}.webp", members.TREES,
                         path[-1].key, member)

    def optimized(self, layer: str, neuron: int, optimized: OptimizedRecord) -> str:
        return self._add(f"assets/optimized/{safe_name(layer)}/{neuron}.png", members.OPTIMIZED, optimized.key,
                         members.optimized(neuron))
