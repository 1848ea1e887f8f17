"""Where every page and asset of the site lives, as paths from the site root.

Pages link with these paths; the ``url`` filter of the templates makes each
relative to the page that holds it.  :class:`Assets` names each file copied
from the cache and remembers where it comes from.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from ..images import NAME_LIMIT, fit_name
from ..methods import MAP
from ..store import members
from ..store.manifest import FeaturedRecord, LayerRecord, OptimizedRecord, PatchRecord, TreeNode
from .model import Asset
from .sheets import QUALITY, Measure, Member, Packer, Pic


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
    """Collects the pictures the pages show.  A featured photo stays a file of its own (its path from the site
    root); every other picture goes into a sheet (``sheets.py``) and is a :class:`Pic`: a neuron's own
    pictures into the neuron's sheet (but a patch's photo that several neurons show into the layer's sheet of
    photos), the tiles of a layer (each neuron's best patch) into the layer's, a
    layer's neurons on a featured image (where each looks, its picture and map there) into one sheet per layer
    and image, an image's tree into the image's.  A ``prefix`` keeps another atlas's files apart (the other
    checkpoint's of a comparison, under "before/"); ``quality`` that of the lossy sheets."""

    def __init__(self, measure: Measure, prefix: str = "", quality: int = QUALITY) -> None:
        self.listed: list[Asset] = []  # files copied as they are
        self.packer = Packer(measure, quality)
        self.prefix = prefix
        self.shared: dict[Member, str] = {}  # a patch's photo that several neurons show -> its layer's sheet

    def share_photos(self, layer: LayerRecord) -> None:
        """Put each patch photo that more than one of the layer's neurons shows (a whole view, where neurons see
        the whole image) into the layer's sheet of photos, once, rather than into each neuron's sheet."""
        shown = Counter(self._photo(patch) for record in layer.neurons for patch in (*record.top, *record.levels))
        self.shared.update({member: self.photos(layer.name) for member, count in shown.items() if count > 1})

    @staticmethod
    def _photo(patch: PatchRecord) -> Member:
        return Member(members.PATCHES, patch.key, members.patch_photo(patch.box))

    # the sheets, by their base paths (sheets.Packer)
    def own(self, layer: str, neuron: int) -> str:
        return f"{self.prefix}assets/layers/{safe_name(layer)}/{neuron}"

    def tiles(self, layer: str) -> str:
        return f"{self.prefix}assets/layers/{safe_name(layer)}/tiles"

    def photos(self, layer: str) -> str:
        return f"{self.prefix}assets/layers/{safe_name(layer)}/photos"

    def on(self, featured: FeaturedRecord, layer: str) -> str:
        return f"{self.prefix}assets/layers/{safe_name(layer)}/on-{featured.slug}"

    def photo(self, featured: FeaturedRecord) -> str:
        path = f"{self.prefix}assets/photos/{featured.slug}.jpg"
        self.listed.append(Asset(path, members.PHOTOS, featured.photo, members.PHOTO))
        return path

    def picture(self, sheet: str, featured: FeaturedRecord, layer: str, neuron: int, method: str,
                part: str = "") -> Pic:
        """A gradient picture of the whole image, or (``part`` "box") cut to the receptive field, or
        (``part`` "img") the photo cut to the same box."""
        member = {"": members.picture, "box": members.picture_zoom, "img": members.photo_zoom}[part](neuron)
        return self.packer.add(sheet, Member(members.PICTURES, featured.pictures[layer][method], member),
                               photo=part == "img")

    def patch(self, sheet: str, neuron: int, patch: PatchRecord, which: str) -> Pic:
        """A patch's photo (``which`` "img") or its picture of a kind (its layer's ``patches``: "guided", its
        guided-backprop picture; "map", its activation map over the photo)."""
        if which == "img":
            photo = self._photo(patch)
            return self.packer.add(self.shared.get(photo, sheet), photo, photo=True)
        return self.packer.add(sheet, Member(members.PATCHES, patch.key, members.patch_picture(which)(neuron)),
                               photo=which == MAP)

    def activation_map(self, sheet: str, featured: FeaturedRecord, layer: str, neuron: int) -> Pic:
        return self.packer.add(sheet, Member(members.MAPS, featured.maps[layer], members.activation_map(neuron)),
                               photo=True)

    def tree_node(self, featured: FeaturedRecord, path: list[TreeNode], which: str) -> Pic:
        """A tree node's path picture (``which`` "picture") or the photo of the same box ("photo"), in the
        sheet of the image's trees."""
        member = members.NODE_PICTURE if which == "picture" else members.NODE_PHOTO
        return self.packer.add(f"{self.prefix}assets/trees/{featured.slug}",
                               Member(members.TREES, path[-1].key, member), photo=which == "photo")

    def optimized(self, sheet: str, neuron: int, optimized: OptimizedRecord) -> Pic:
        return self.packer.add(sheet, Member(members.OPTIMIZED, optimized.key, members.optimized(neuron)))
