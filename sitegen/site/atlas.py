"""The typed manifest as every page sees it: lookups, labels, parents, and the small views that several
page types show (a layer's summary, a neuron's tile, its thumbnail on an image, its children and parents).

This module and everything the site half imports run without torch.
"""

from __future__ import annotations

from ..config import Config
from ..methods import BY_NAME, GUIDED, MAP, PICTURE_METHODS
from ..store.manifest import ClassShare, Edge, FeaturedRecord, LayerRecord, Manifest, NeuronRecord, classifier_output
from .content import Content
from .links import Assets, image_url, layer_url, neuron_url, node_id, safe_name
from .model import plural
from .sheets import Measure, Pic

# What a layer's top patches show beside their photos (LayerRecord.patches), as pages name it: "phrase" within a
# sentence, "label" before the patch's number or place, "scale" before its scale, "class" of the pic macro ("g":
# a gradient picture)
PATCH_KINDS = {**{m: {"name": m, "title": BY_NAME[m].title, "phrase": BY_NAME[m].phrase,
                      "label": f"{BY_NAME[m].title} patch", "scale": f"{BY_NAME[m].title}, scale", "class": "g"}
                  for m in PICTURE_METHODS},
               MAP: {"name": MAP, "title": "Where it fires", "phrase": "where it fires",
                     "label": "Activation map patch", "scale": "Activation map, maximum", "class": ""}}
LEADS = (0.3, 2.0, 3)  # an automatic label: the leading class holds at least this share of the top-N images,
# is at least this many times as common among them as in the probe set, with at least this many images


def automatic(classes: tuple[ClassShare, ...]) -> str:
    """A neuron's automatic label: the leading class of its top images where it clearly leads (ahead of the
    second, and by the figures of ``LEADS``), else ""."""
    if not classes:
        return ""
    lead = classes[0]
    if len(classes) > 1 and classes[1].share >= lead.share:
        return ""
    if lead.share >= LEADS[0] and lead.selectivity >= LEADS[1] and lead.count >= LEADS[2]:
        return lead.name
    return ""


def check(layer: LayerRecord, method: str) -> dict | None:
    """A method's randomization check at the layer, in words a reader understands (None where it was not
    checked: no featured image)."""
    if method not in layer.sanity:
        return None
    figure = layer.sanity[method]
    if figure is None:
        return {"figure": None, "words": "not measured (its checked pictures are zero)", "level": "none"}
    level = "fails" if figure >= 0.9 else "partly" if figure >= 0.5 else "passes"
    how = {"fails": "barely depends on", "partly": "depends only in part on", "passes": "depends on"}[level]
    return {"figure": figure, "level": level,
            "words": f"{figure:.2f}, this picture {how} what {layer.name} learned (its own weights)"}


def agreement(layer: LayerRecord) -> dict | None:
    """How far the layer's first-order effects order the classes as its exact ones do, in words (None where it
    has too few pairs computed exactly): over all its (neuron, class) pairs (a Spearman correlation, which
    neurons that matter more than others raise), and within rows: for how many neurons the class put first is
    the one zeroing costs most.  The verdict is the worse of the two: good from 0.90 (and 9 rows in 10),
    rough from 0.50 (and 6 rows in 10), else poor."""
    figure = layer.effects_agreement
    if figure is None:
        return None
    same, of = layer.effects_first_same
    share = same / of if of else 1.0
    level = "good" if figure >= 0.9 and share >= 0.9 else "rough" if figure >= 0.5 and share >= 0.6 else "poor"
    reads = {"good": "the first-order column orders the classes as zeroing the neuron does",
             "rough": "the first-order column orders the classes only roughly as zeroing the neuron does; where "
                      "the two differ, the exact column is the measurement",
             "poor": "the first-order column is a poor guide here; only the exact column measures what zeroing "
                     "the neuron does"}[level]
    short = {"good": "orders as zeroing does", "rough": "orders only roughly",
             "poor": "a poor guide: read the exact column"}[level]
    return {"figure": figure, "pairs": layer.effects_pairs, "level": level, "reads": reads, "short": short,
            "same": same, "of": of}


class Atlas:
    def __init__(self, manifest: Manifest, config: Config, measure: Measure, before: bool = False):
        """``measure``: the size of a picture in the cache (sheets.py); ``before``: the atlas of the other
        checkpoint of a comparison (its files under "before/", its labels the class names alone: the notes
        describe this model's neurons)."""
        self.manifest = manifest
        self.config = config
        self.content = Content(config.root, config.site.raw_html)
        self.assets = Assets(measure, "before/" if before else "", config.site.quality)
        self.layers = manifest.layers
        for layer in self.layers:
            self.assets.share_photos(layer)
        self._index = {layer.name: index for index, layer in enumerate(self.layers)}
        self._records = {(layer.name, record.neuron): record for layer in self.layers for record in layer.neurons}
        self.automatic: set[tuple[str, int]] = set()  # neurons named by the classes of their top images
        self.labels = self._labels(notes=not before)
        self.parents = self._parents()
        self.in_trees = self._in_trees()
        compare = manifest.compare
        self.before = Atlas(compare.before, config, measure, before=True) if compare else None
        self.changes = {(layer.name, change.neuron): change for layer in compare.layers
                        for change in layer.neurons} if compare else {}
        # (layer, the other checkpoint's neuron) -> the neuron matched with it here
        self.matched = {(layer, change.match): neuron for (layer, neuron), change in self.changes.items()}

    # -- lookups -------------------------------------------------------------
    def layer(self, name: str) -> LayerRecord:
        return self.layers[self._index[name]]

    def neighbour(self, layer: LayerRecord, step: int) -> LayerRecord | None:
        """The configured layer ``step`` places above (or below, negative) ``layer``, if any."""
        index = self._index[layer.name] + step
        return self.layers[index] if 0 <= index < len(self.layers) else None

    def record(self, layer: str, neuron: int) -> NeuronRecord:
        return self._records[(layer, neuron)]

    def is_logits(self, layer: LayerRecord) -> bool:
        """Whether the layer is the classifier's output, one unit per class."""
        return classifier_output(layer.shape, self.manifest.model.categories)

    def _labels(self, notes: bool = True) -> dict[tuple[str, int], tuple[str, str]]:
        """(layer, neuron) -> (label, notes as HTML): a note's '# Label', else the class of a logit."""
        labels = {}
        categories = self.manifest.model.categories
        for layer in self.layers:
            for neuron in layer.mapped:
                label, notes_html = self.content.note("neurons", safe_name(layer.name), f"{neuron}.md") if notes \
                    else ("", "")
                label = label or (categories[neuron] if self.is_logits(layer) else "")
                if not label:
                    label = automatic(self.record(layer.name, neuron).classes)
                    if label:
                        self.automatic.add((layer.name, neuron))
                labels[(layer.name, neuron)] = (label, notes_html)
        return labels

    def _parents(self) -> dict[tuple[str, int], dict[str, list[Edge]]]:
        """(lower layer, neuron) -> {featured slug or "dataset": the upper neurons that have it among their
        children, strongest first}."""
        parents: dict[tuple[str, int], dict[str, list[Edge]]] = {}
        for layer in self.layers:
            if not layer.lower:
                continue
            for record in layer.neurons:
                for where, children in record.children.items():
                    for child in children:
                        rows = parents.setdefault((layer.lower, child.neuron), {}).setdefault(where, [])
                        rows.append(Edge(record.neuron, child.weight, child.count))
        for lists in parents.values():
            for rows in lists.values():
                rows.sort(key=lambda edge: (-edge.weight, edge.neuron))
        return parents

    @staticmethod
    def methods(layer: LayerRecord) -> list[dict]:
        """The methods of the layer's featured pictures, with what each shows and when it misleads."""
        return [{"name": m, "title": BY_NAME[m].title, "shows": BY_NAME[m].shows, "misleads": BY_NAME[m].misleads,
                 "check": check(layer, m)} for m in layer.methods]

    @staticmethod
    def checks(layer: LayerRecord) -> list[dict]:
        """The randomization check of each method the layer's pages show: its featured pictures' methods, its
        patches' where the featured pictures are by other methods, and guided backprop's where neither is (why
        the patches show another method, or maps)."""
        shown = [(m, BY_NAME[m].title) for m in layer.methods]
        if layer.patches not in (*layer.methods, MAP):
            shown.append((layer.patches, f"{BY_NAME[layer.patches].title} (patches)"))
        if GUIDED not in (*layer.methods, layer.patches):
            shown.append((GUIDED, f"{BY_NAME[GUIDED].title} (not shown: the patches show "
                                  f"{'activation maps' if layer.patches == MAP else BY_NAME[layer.patches].phrase})"))
        return [{**c, "title": title} for m, title in shown if (c := check(layer, m))]

    @staticmethod
    def thumbnail_method(layer: LayerRecord) -> str:
        """The method of the layer's small pictures (thumbnails, trees): guided backprop where it is shown."""
        return GUIDED if GUIDED in layer.methods else layer.methods[0]

    def _in_trees(self) -> dict[tuple[str, int], dict[str, list[dict]]]:
        """(layer, neuron) -> {featured slug: the paths of that image's trees that end at it, or at a part
        that holds it, as links, with the share of its parent's positive weight that the node carries
        (``share``) and that the neuron carries (``own``: in a part, its channel's weight's part of it);
        the root first, then the neuron's largest own share first}."""
        found: dict[tuple[str, int], dict[str, list[dict]]] = {}

        def walk(featured: FeaturedRecord, path: list) -> None:
            here = path[-1]
            text = " › ".join(f"{n.layer} (a part of {plural(len(n.group), 'channel')})" if n.group
                              else f"{n.layer}/{n.neuron}" for n in path)
            members = [(edge.neuron, edge.weight) for edge in here.group] or [(here.neuron, here.weight)]
            for neuron, weight in members:
                own = here.share * weight / here.weight if here.share is not None and here.weight else here.share
                found.setdefault((here.layer, neuron), {}).setdefault(featured.slug, []).append(
                    {"text": text, "share": here.share, "own": own, "part": bool(here.group),
                     "url": f"{image_url(featured.slug)}#{node_id(path)}"})
            for child in here.children:
                walk(featured, path + [child])

        for featured in self.manifest.featured:
            for root in featured.trees:
                walk(featured, [root])
        for per_image in found.values():
            for paths in per_image.values():
                paths.sort(key=lambda p: -(p["own"] if p["own"] is not None else 2.0))
        return found

    # -- small views ---------------------------------------------------------
    def layer_summary(self, layer: LayerRecord) -> dict:
        rf = layer.rf_size
        return {"name": layer.name, "path": layer.path, "url": layer_url(layer.name), "count": layer.count,
                "mapped": len(layer.neurons), "selection": layer.selection,
                "shape": " x ".join(str(s) for s in layer.shape),
                "kind": "channels" if len(layer.shape) == 3 else "units",
                "rf": f"{rf[0]} x {rf[1]} px" if rf else "whole image",
                "effective": f"{layer.effective} x {layer.effective} px" if layer.effective else "whole image",
                "looks": f"{layer.effective} x {layer.effective} px of the image" if layer.effective
                else "the whole image",
                "signed": layer.signed, "nonfinite": layer.nonfinite, "logits": self.is_logits(layer),
                "patch": PATCH_KINDS[layer.patches]}

    def tile(self, layer: str, neuron: int) -> dict:
        """A neuron in brief: its best patch, label and link."""
        best = self.record(layer, neuron).top[0]
        optimized, kind = self.layer(layer).optimized, PATCH_KINDS[self.layer(layer).patches]
        sheet = self.assets.tiles(layer)
        return {"layer": layer, "neuron": neuron, "url": neuron_url(layer, neuron),
                "label": self.labels[(layer, neuron)][0], "auto": (layer, neuron) in self.automatic,
                "value": best.value,
                "img": self.assets.patch(sheet, neuron, best, "img"),
                "vis": self.assets.patch(sheet, neuron, best, kind["name"]),
                "vis_phrase": kind["phrase"], "vis_class": kind["class"],
                "opt": self.assets.optimized(sheet, neuron, optimized) if optimized else None}

    def on_image(self, featured: FeaturedRecord, layer: str, neuron: int) -> dict:
        """The neuron on an image as a relative shows it: where it fires, beside the whole photo (a map is of
        the whole image), in a layer whose patches show that; else its picture there (:meth:`thumbnail`) beside
        the photo where it looks.  The pictures, the second's alt text and pic class."""
        if self.layer(layer).patches == MAP:
            return {"img": self.assets.photo(featured), "vis_alt": f"Where {layer}/{neuron} fires there",
                    "vis": self.assets.activation_map(self.assets.on(featured, layer), featured, layer, neuron),
                    "vis_class": ""}
        return {"img": self.photo_there(featured, layer, neuron), "vis": self.thumbnail(featured, layer, neuron),
                "vis_alt": f"{BY_NAME[self.thumbnail_method(self.layer(layer))].title} of {layer}/{neuron} there",
                "vis_class": "g"}

    def on_image_phrase(self, layer: str) -> str:
        """What :meth:`on_image` shows of the layer's neurons, within a sentence."""
        record = self.layer(layer)
        return PATCH_KINDS[MAP]["phrase"] if record.patches == MAP else BY_NAME[self.thumbnail_method(record)].phrase

    def thumbnail(self, featured: FeaturedRecord, layer: str, neuron: int) -> Pic:
        """The neuron's picture on an image: its receptive field where that is smaller than the image."""
        record = self.layer(layer)
        return self.assets.picture(self.assets.on(featured, layer), featured, layer, neuron,
                                   self.thumbnail_method(record), "box" if record.zoom else "")

    def photo_there(self, featured: FeaturedRecord, layer: str, neuron: int) -> Pic | str:
        """The photo where the neuron looks on an image (the whole photo where it sees all of it)."""
        record = self.layer(layer)
        if not record.zoom:
            return self.assets.photo(featured)
        return self.assets.picture(self.assets.on(featured, layer), featured, layer, neuron, record.methods[0], "img")

    def relatives(self, edges: tuple[Edge, ...] | list[Edge], layer: str,
                  featured: FeaturedRecord | None) -> list[dict]:
        """Children or parents as tiles with their weight (and count): their best patch, or (on ``featured``)
        the photo where each looks there beside its picture there."""
        out = []
        for edge in edges[:self.manifest.children]:
            tile = self.tile(layer, edge.neuron)
            tile["weight"] = edge.weight
            tile["count"] = edge.count
            tile["below"] = None
            if featured is not None:
                tile.update(self.on_image(featured, layer, edge.neuron))
                seen = self.record(layer, edge.neuron).featured.get(featured.slug)
                # below 0 everywhere on the image: a map of it is blank, and its weight comes from a negative value
                if seen is not None and seen.value <= 0:
                    tile["below"] = seen.value
            out.append(tile)
        return out

    def optimize_summary(self, layer: LayerRecord) -> dict | None:
        optimized = layer.optimized
        if optimized is None:
            return None
        recipe = optimized.recipe
        objective = "its mean over positions" if len(layer.shape) == 3 else "its value"
        return {"beats_probe": optimized.beats_probe, "specific": optimized.specific, "objective": objective,
                "recipe": f"{recipe['steps']} steps of Adam (learning rate {recipe['lr']:g}) on a "
                          f"{recipe['size']} px image parameterized in decorrelated colour and scaled Fourier "
                          f"space, padded by {recipe['pad']} px and jittered by up to {recipe['jitter']} px, "
                          f"scaled by up to {recipe['scale']:.0%} and rotated by up to {recipe['rotate']:g}° at "
                          f"random at every step; seed {optimized.seed}"}
