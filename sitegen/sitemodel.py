"""Manifest + Markdown content -> every page's view-model and every asset.

All data is gathered here before anything is written (MkDocs' "first gather
all data, then write").  This module and everything it imports run without
torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import markdown as md

from .cache import Cache
from .config import Config
from .images import GRADIENT_STEP, expand

DEFINITIONS = {
    "activation": ("A channel's activation on an image is its maximum over positions, and its position is "
                   "where that maximum is (the first one in reading order). A unit of a flat layer has one "
                   "value."),
    "guided": ("Guided backpropagation (Springenberg et al., 2015): the gradient of the neuron's activation "
               "at its position with respect to the input pixels, where every ReLU passes back only positive "
               "gradients and only where its input was positive."),
    "deconv": ("Deconvnet (Zeiler & Fergus, 2014): as the gradient, but every ReLU passes back the positive "
               "part of the gradient, whatever its input was."),
    "gradient": ("The plain gradient (Simonyan et al., 2014): which pixels, if changed, would most change "
                 "the neuron."),
    "optimize": ("An optimized image (Olah et al., Feature Visualization, 2017) starts from noise and is changed "
                 "step by step to raise the neuron's objective: a channel's mean over positions, a unit's value. "
                 "The image is parameterized in decorrelated colour and scaled Fourier space and is jittered, "
                 "scaled and rotated at random at every step, so that only patterns that survive small "
                 "transformations grow; a ReLU closed for the whole image passes back the gradient that would "
                 "open it. Each neuron's randomness comes from the seed and its number."),
    "picture": ("Each picture shows g / max|g| * 0.5 + 0.5, one maximum over the whole picture, so zero is "
                "mid-grey and colours keep their balance. The whole image is shown, grey where the neuron "
                f"cannot see. Pictures are stored with levels {GRADIENT_STEP} apart, counted from mid-grey, so "
                f"no value is more than {GRADIENT_STEP // 2} of 255 from the exact picture; this keeps faint "
                "detail that a lossy format would smooth away."),
    "other": ("Only ReLU and ReLU6 change their backward pass; every other function (pooling, batch norm, "
              "sigmoid, swish) keeps its true gradient."),
    "patch": ("A patch is the neuron's receptive field at its position: the box of input pixels that can "
              "affect it, from the layers' kernels, strides and padding, grey where it leaves the image. "
              "Where the box is larger than the image, the whole image is shown. The guided patch is the "
              "same box cut from the guided-backprop picture. Patches larger than 128 pixels are shown "
              "shrunk to 128."),
    "top": ("Top patches: the probe views with the highest activation, one patch per view, ties broken by "
            "the order of the probe set."),
}
METHOD_TITLES = {"guided": "Guided backprop", "deconv": "Deconvnet", "gradient": "Gradient"}


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "_"


def render_markdown(text: str) -> str:
    return md.markdown(text, extensions=["extra", "sane_lists"], output_format="html")


def split_label(text: str) -> tuple[str, str]:
    """A note starting with '# Label' gives the neuron its label; the rest is its note."""
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("# "):
        return lines[0][2:].strip(), "\n".join(lines[1:]).strip()
    return "", text.strip()


@dataclass
class Page:
    path: str  # output path relative to the site root, posix
    template: str
    title: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Asset:
    path: str  # output path relative to the site root
    kind: str  # cache entry kind
    key: str
    member: str


@dataclass
class SiteModel:
    title: str
    pages: list[Page]
    assets: list[Asset]
    nav: list[dict[str, str]]
    files: dict[str, bytes] = field(default_factory=dict)  # made here: manifest.json, the search index
    provenance: dict[str, Any] = field(default_factory=dict)


class _Builder:
    def __init__(self, manifest: dict, config: Config, cache: Cache):
        self.m = manifest
        self.config = config
        self.content = config.root
        self.cache = cache
        self.assets: list[Asset] = []
        self.methods: list[str] = manifest["methods"]
        self.layers = manifest["layers"]
        self.featured = manifest["featured"]
        self.probe_items = manifest["probe"]["items"]
        self._acts: dict[tuple[str, str], Any] = {}

    # -- data --------------------------------------------------------------
    def acts(self, featured: dict, layer: str):
        key = featured["acts"][layer]
        if (key, layer) not in self._acts:
            entry = self.cache.get("acts", key)
            if entry is None:
                raise FileNotFoundError(f"cache entry acts/{key} is missing: run `sitegen compute` first")
            self._acts[(key, layer)] = (entry["values.npy"], entry["positions.npy"])
        return self._acts[(key, layer)]

    def note(self, *parts: str) -> tuple[str, str]:
        path = self.content.joinpath(*parts)
        if path.is_file():
            label, text = split_label(path.read_text(encoding="utf-8"))
            return label, render_markdown(text) if text else ""
        return "", ""

    def asset(self, path: str, kind: str, key: str, member: str) -> str:
        self.assets.append(Asset(path, kind, key, member))
        return path

    # -- urls ----------------------------------------------------------------
    @staticmethod
    def layer_url(layer: str) -> str:
        return f"layers/{safe_name(layer)}.html"

    @staticmethod
    def neuron_url(layer: str, neuron: int) -> str:
        return f"layers/{safe_name(layer)}/{neuron}.html"

    @staticmethod
    def image_url(slug: str) -> str:
        return f"images/{slug}.html"

    def photo(self, featured: dict) -> str:
        return self.asset(f"assets/photos/{featured['slug']}.jpg", "photo", featured["photo"], "photo.jpg")

    def vis(self, featured: dict, layer: str, neuron: int, method: str, part: str = "") -> str:
        """A visualization: the whole picture, or (part "box", "img") its receptive field zoomed."""
        suffix = f"-{part}" if part else ""
        return self.asset(f"assets/vis/{safe_name(layer)}/{neuron}/{featured['slug']}-{method}{suffix}.webp",
                          "vis", featured["vis"][layer][method], f"{neuron}{suffix}.webp")

    def patch(self, layer: str, neuron: int, patch: dict, which: str) -> str:
        name = patch["rank"] if "rank" in patch else f"p{patch['percentile']:g}"
        return self.asset(f"assets/patches/{safe_name(layer)}/{neuron}/{name}-{which}.webp", "patch",
                          patch["entry"], f"{neuron}-{which}.webp")

    def optimized(self, layer: str, neuron: int) -> str | None:
        """The neuron's image optimized from noise, where its layer has them."""
        check = self.by_name[layer].get("optimize")
        if not check:
            return None
        return self.asset(f"assets/optimized/{safe_name(layer)}/{neuron}.png", "opt", check["entry"], f"{neuron}.png")

    def optimize_summary(self, layer: dict) -> dict | None:
        check = layer.get("optimize")
        if not check:
            return None
        recipe = check["recipe"]
        objective = "its mean over positions" if len(layer["shape"]) == 3 else "its value"
        return {"beats_probe": check["beats_probe"], "specific": check["specific"], "objective": objective,
                "recipe": f"{recipe['steps']} steps of Adam (learning rate {recipe['lr']:g}) on a "
                          f"{recipe['size']} px image parameterized in decorrelated colour and scaled Fourier "
                          f"space, padded by {recipe['pad']} px and jittered by up to {recipe['jitter']} px, "
                          f"scaled by up to {recipe['scale']:.0%} and rotated by up to {recipe['rotate']:g}° at "
                          f"random at every step; seed {check['seed']}"}

    # -- pages ---------------------------------------------------------------
    def build(self) -> SiteModel:
        self.by_name = {layer["name"]: layer for layer in self.layers}
        self.entries = {(layer["name"], n["id"]): n for layer in self.layers for n in layer["neurons"]}
        self.labels = {}
        categories = self.m["model"]["categories"]
        for layer in self.layers:
            is_logits = len(layer["shape"]) == 1 and categories and layer["shape"][0] == len(categories)
            for n in layer["units"]:
                label, notes = self.note("neurons", safe_name(layer["name"]), f"{n}.md")
                self.labels[(layer["name"], n)] = (label or (categories[n] if is_logits else ""), notes)
        self.parents = self.invert_children()
        pages = [self.index_page(), self.about_page()]
        for index, layer in enumerate(self.layers):
            pages.append(self.layer_page(index, layer))
            for position, neuron in enumerate(layer["units"]):
                pages.append(self.neuron_page(index, layer, position, neuron))
        for featured in self.featured:
            pages.append(self.image_page(featured))
        pages.extend(self.markdown_pages())
        pages.append(Page("search.html", "search.html", "Search", {}))
        nav = [{"title": "Atlas", "url": "index.html"}]
        nav += [{"title": layer["name"], "url": self.layer_url(layer["name"])} for layer in self.layers]
        nav += [{"title": "About", "url": "about.html"}]
        files = {"manifest.json": self.site_manifest(), "search-index.js": self.search_index()}
        model = self.m["model"]
        provenance = {"version": self.m["sitegen_version"], "model": model["name"],
                      "fingerprint": model["fingerprint"], "probe_count": self.m["probe"]["count"],
                      "probe_hash": self.m["probe"]["hash"]}
        return SiteModel(self.m["title"], pages, self.assets, nav, files, provenance)

    def site_manifest(self) -> bytes:
        """Where every picture came from: the model, the definitions, and per patch its source and value."""
        model = self.m["model"]
        data = {
            "sitegen_version": self.m["sitegen_version"],
            "model": {"name": model["name"], "weights": model["weights"], "fingerprint": model["fingerprint"],
                      "preprocess": model["preprocess"]},
            "probe": {"count": self.m["probe"]["count"], "files": self.m["probe"]["files"],
                      "hash": self.m["probe"]["hash"]},
            "methods": self.methods, "top_k": self.m["top_k"], "definitions": DEFINITIONS,
            "featured": [{"name": f["name"], "page": self.image_url(f["slug"]), "predictions": f["predictions"]}
                         for f in self.featured],
            "layers": [{
                "name": layer["name"], "module": layer["path"], "shape": layer["shape"],
                "receptive_field": layer["rf_size"], "optimize": layer.get("optimize"), "neurons": [{
                    "neuron": entry["id"], "page": self.neuron_url(layer["name"], entry["id"]),
                    "top_patches": [{"rank": p["rank"], "value": p["value"], "box": p["box"],
                                     "source": self.probe_items[p["item"]]["name"],
                                     "view": self.probe_items[p["item"]]["view"]} for p in entry["top"]]}
                    for entry in layer["neurons"]]} for layer in self.layers],
        }
        return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")

    def search_index(self) -> bytes:
        """Every layer, neuron and featured image as a search entry, in a script file (works from file://)."""
        entries = [{"t": f"Layer {layer['name']}", "d": layer["path"], "u": self.layer_url(layer["name"])}
                   for layer in self.layers]
        for layer in self.layers:
            for entry in layer["neurons"]:
                neuron = entry["id"]
                label, notes = self.labels[(layer["name"], neuron)]
                sources = sorted({self.probe_items[p["item"]]["name"] for p in entry["top"]})
                entries.append({"t": f"{layer['name']}/{neuron}" + (f" {label}" if label else ""),
                                "d": " ".join([re.sub(r"<[^>]+>", " ", notes)] + sources).strip(),
                                "u": self.neuron_url(layer["name"], neuron)})
        for featured in self.featured:
            entries.append({"t": featured["name"], "d": " ".join(p["label"] for p in featured["predictions"]),
                            "u": self.image_url(featured["slug"])})
        text = json.dumps(entries, ensure_ascii=False, separators=(",", ":"))
        return f"window.SITEGEN_INDEX = {text};\n".encode("utf-8")

    def invert_children(self) -> dict[tuple[str, int], dict[str, list]]:
        """(lower layer, neuron) -> {image slug or "dataset": [[upper neuron, w, ...], ...]}, strongest first."""
        parents: dict[tuple[str, int], dict[str, list]] = {}
        for layer in self.layers:
            if not layer["lower"]:
                continue
            for entry in layer["neurons"]:
                for where, children in entry["children"].items():
                    for child in children:
                        key = (layer["lower"], child[0])
                        parents.setdefault(key, {}).setdefault(where, []).append([entry["id"], *child[1:]])
        for lists in parents.values():
            for where in lists:
                lists[where].sort(key=lambda row: (-row[1], row[0]))
        return parents

    def layer_summary(self, layer: dict) -> dict:
        shape = layer["shape"]
        rf = layer["rf_size"]
        return {"name": layer["name"], "path": layer["path"], "url": self.layer_url(layer["name"]),
                "neurons": shape[0], "mapped": len(layer["units"]), "selection": layer["selection"],
                "shape": " x ".join(str(s) for s in shape),
                "kind": "channels" if len(shape) == 3 else "units",
                "rf": f"{rf[0]} x {rf[1]} px" if rf else "whole image"}

    def index_page(self) -> Page:
        _, intro = self.note("index.md")
        images = [{"slug": f["slug"], "name": f["name"], "url": self.image_url(f["slug"]), "photo": self.photo(f),
                   "predictions": f["predictions"][:3]} for f in self.featured]
        return Page("index.html", "index.html", self.m["title"], {
            "intro": intro, "layers": [self.layer_summary(layer) for layer in self.layers], "images": images,
            "model": self.m["model"], "probe": self.m["probe"],
            "total_neurons": sum(len(layer["units"]) for layer in self.layers)})

    def about_page(self) -> Page:
        _, extra = self.note("about.md")
        return Page("about.html", "about.html", "About", {
            "extra": extra, "model": self.m["model"], "methods": [
                {"name": m, "title": METHOD_TITLES[m], "text": DEFINITIONS[m]} for m in self.methods],
            "definitions": DEFINITIONS, "credits": self.credits(), "probe": self.m["probe"],
            "top_k": self.m["top_k"], "sitegen_version": self.m["sitegen_version"],
            "children": self.config.compute.children,
            "optimized_layers": [self.layer_summary(layer) for layer in self.layers if layer.get("optimize")]})

    def credits(self) -> dict:
        """Each credit with the files it covers, and the used files that no credit covers."""
        credited, entries = set(), []
        root = self.config.root.resolve()
        for index, credit in enumerate(self.config.credits):
            files = expand(credit.files, self.config.root, f"credits[{index}].files")
            names = [p.resolve().relative_to(root).as_posix() if p.resolve().is_relative_to(root) else p.name
                     for p in files]
            credited.update(names)
            entries.append({"title": credit.title, "author": credit.author, "license": credit.license,
                            "source": credit.source, "files": names})
        used = {f["name"] for f in self.featured} | {item["name"] for item in self.probe_items}
        return {"entries": entries, "uncredited": sorted(used - credited)}

    def tile(self, layer: str, neuron: int) -> dict:
        """A neuron in brief: its best patch, label and link."""
        top = self.entries[(layer, neuron)]["top"]
        return {"layer": layer, "neuron": neuron, "url": self.neuron_url(layer, neuron),
                "label": self.labels[(layer, neuron)][0], "value": top[0]["value"],
                "img": self.patch(layer, neuron, top[0], "img"), "gb": self.patch(layer, neuron, top[0], "gb"),
                "opt": self.optimized(layer, neuron)}

    def thumbnail(self, featured: dict, layer: str, neuron: int) -> str:
        """The neuron's guided visualization on an image: its receptive field where that is smaller."""
        method = "guided" if "guided" in self.methods else self.methods[0]
        return self.vis(featured, layer, neuron, method, "box" if self.by_name[layer]["zoom"] else "")

    def layer_page(self, index: int, layer: dict) -> Page:
        _, notes = self.note("layers", f"{safe_name(layer['name'])}.md")
        tiles = [self.tile(layer["name"], n) for n in layer["units"]]
        return Page(self.layer_url(layer["name"]), "layer.html", f"Layer {layer['name']}", {
            "layer": self.layer_summary(layer), "notes": notes, "tiles": tiles,
            "optimize": self.optimize_summary(layer),
            "below": self.layer_summary(self.layers[index - 1]) if index > 0 else None,
            "above": self.layer_summary(self.layers[index + 1]) if index + 1 < len(self.layers) else None})

    def relatives(self, rows: list, layer: str, featured: dict | None) -> list[dict]:
        """Children or parents as tiles with their weight (and count), thumbnails on ``featured``."""
        out = []
        for row in rows[:self.config.compute.children]:
            tile = self.tile(layer, row[0])
            tile["weight"] = row[1]
            tile["count"] = row[2] if len(row) > 2 else None
            tile["vis"] = self.thumbnail(featured, layer, row[0]) if featured is not None else None
            out.append(tile)
        return out

    def edge_sections(self, layer: dict, index: int, neuron: int) -> dict:
        entry = self.entries[(layer["name"], neuron)]
        above = self.layers[index + 1]["name"] if index + 1 < len(self.layers) else None
        parents = self.parents.get((layer["name"], neuron), {})
        sections = []
        for featured in self.featured:
            sections.append({
                "title": featured["name"], "slug": featured["slug"], "photo": self.photo(featured),
                "children": self.relatives(entry["children"].get(featured["slug"], []), layer["lower"], featured)
                if layer["lower"] else [],
                "parents": self.relatives(parents.get(featured["slug"], []), above, featured) if above else []})
        dataset = {
            "children": self.relatives(entry["children"].get("dataset", []), layer["lower"], None)
            if layer["lower"] else [],
            "parents": self.relatives(parents.get("dataset", []), above, None) if above else []}
        return {"lower": layer["lower"], "upper": above, "per_image": sections, "dataset": dataset}

    def neuron_page(self, index: int, layer: dict, position: int, neuron: int) -> Page:
        name = layer["name"]
        label, notes = self.labels[(name, neuron)]
        rows = []
        for featured in self.featured:
            values, positions = self.acts(featured, name)
            width = layer["shape"][2] if len(layer["shape"]) == 3 else 1
            row, col = divmod(int(positions[neuron]), width)
            zoom = layer["zoom"]
            specificity = featured.get("specificity", {}).get(name, {}).get(str(neuron))
            rows.append({"slug": featured["slug"], "name": featured["name"], "url": self.image_url(featured["slug"]),
                         "photo": self.photo(featured), "value": float(values[neuron]), "specificity": specificity,
                         "position": f"({row}, {col})" if len(layer["shape"]) == 3 else "",
                         "crop": self.vis(featured, name, neuron, self.methods[0], "img") if zoom else None,
                         "pictures": [{"method": m, "title": METHOD_TITLES[m],
                                       "src": self.vis(featured, name, neuron, m),
                                       "zoom": self.vis(featured, name, neuron, m, "box") if zoom else None}
                                      for m in self.methods]})
        patches = []
        for patch in self.entries[(name, neuron)]["top"]:
            item = self.probe_items[patch["item"]]
            patches.append({"rank": patch["rank"], "value": patch["value"], "source": item["name"],
                            "view": item["view"], "img": self.patch(name, neuron, patch, "img"),
                            "gb": self.patch(name, neuron, patch, "gb")})
        levels = []
        for level in self.entries[(name, neuron)].get("levels", []):
            item = self.probe_items[level["item"]]
            levels.append({"percentile": f"{level['percentile']:g}", "value": level["value"], "source": item["name"],
                           "view": item["view"], "img": self.patch(name, neuron, level, "img"),
                           "gb": self.patch(name, neuron, level, "gb")})
        units = layer["units"]
        optimized = None
        if layer.get("optimize"):
            optimized = {"src": self.optimized(name, neuron), **layer["optimize"]["neurons"][str(neuron)],
                         **self.optimize_summary(layer)}
        return Page(self.neuron_url(name, neuron), "neuron.html", f"{name}/{neuron}", {
            "levels": levels, "optimized": optimized,
            "layer": self.layer_summary(layer), "neuron": neuron, "label": label, "notes": notes,
            "rows": rows, "methods": [{"name": m, "title": METHOD_TITLES[m]} for m in self.methods],
            "patches": patches, "top_k": self.m["top_k"], "edges": self.edge_sections(layer, index, neuron),
            "histogram": self.histogram(self.entries[(name, neuron)]["stats"]),
            "prev": units[position - 1] if position > 0 else None,
            "next": units[position + 1] if position + 1 < len(units) else None,
            "prev_url": self.neuron_url(name, units[position - 1]) if position > 0 else None,
            "next_url": self.neuron_url(name, units[position + 1]) if position + 1 < len(units) else None,
            "model": self.m["model"], "probe": self.m["probe"], "sitegen_version": self.m["sitegen_version"]})

    @staticmethod
    def histogram(stats: dict, width: int = 240, height: int = 60) -> dict:
        """Bars of the neuron's activation histogram over the probe set, for an inline SVG."""
        counts = stats["counts"]
        peak = max(counts) or 1
        step = width / len(counts)
        bars = [{"x": round(i * step, 1), "w": round(step - 1, 1), "h": round(height * c / peak, 1),
                 "y": round(height - height * c / peak, 1), "n": c} for i, c in enumerate(counts)]
        span = stats["high"] - stats["low"]
        zero = None
        if span > 0 and stats["low"] < 0 < stats["high"]:
            zero = round(width * (0 - stats["low"]) / span, 1)
        return {"bars": bars, "width": width, "height": height, "zero": zero, **stats}

    def tree(self, featured: dict) -> dict | None:
        """From the top class (or the top layer's most active neuron) down through every layer."""
        top = self.layers[-1]
        values, _ = self.acts(featured, top["name"])
        predictions = [p["class"] for p in featured["predictions"] if p["class"] in top["units"]]
        is_logits = len(top["shape"]) == 1 and top["shape"][0] == len(self.m["model"]["categories"] or [])
        root = predictions[0] if is_logits and predictions else max(top["units"], key=lambda n: (values[n], -n))

        def node(layer: dict, neuron: int, weight: float | None, depth: int) -> dict:
            entry = self.entries[(layer["name"], neuron)]
            lower = self.by_name.get(layer["lower"]) if layer["lower"] else None
            kids = entry["children"].get(featured["slug"], [])[:self.config.site.tree_width] if lower else []
            return {"layer": layer["name"], "neuron": neuron, "label": self.labels[(layer["name"], neuron)][0],
                    "url": self.neuron_url(layer["name"], neuron), "weight": weight, "depth": depth,
                    "vis": self.thumbnail(featured, layer["name"], neuron),
                    "best": self.patch(layer["name"], neuron, entry["top"][0], "img"),
                    "value": float(self.acts(featured, layer["name"])[0][neuron]),
                    "children": [node(lower, child[0], child[1], depth + 1) for child in kids]}

        return node(top, root, None, 0)

    def image_page(self, featured: dict) -> Page:
        per_layer = []
        limit = self.config.site.active_neurons
        for layer in self.layers:
            values, _ = self.acts(featured, layer["name"])
            order = sorted(layer["units"], key=lambda n: (-float(values[n]), n))[:limit]
            method = "guided" if "guided" in self.methods else self.methods[0]
            per_layer.append({"layer": self.layer_summary(layer), "method": METHOD_TITLES[method], "neurons": [
                {"neuron": n, "value": float(values[n]), "url": self.neuron_url(layer["name"], n),
                 "label": self.labels[(layer["name"], n)][0],
                 "crop": self.vis(featured, layer["name"], n, self.methods[0], "img") if layer["zoom"] else None,
                 "vis": self.thumbnail(featured, layer["name"], n)}
                for n in order]})
        return Page(self.image_url(featured["slug"]), "image.html", featured["name"], {
            "image": {"name": featured["name"], "photo": self.photo(featured)},
            "predictions": featured["predictions"], "layers": per_layer, "tree": self.tree(featured),
            "tree_width": self.config.site.tree_width})

    def markdown_pages(self) -> list[Page]:
        pages = []
        for path in sorted(self.content.glob("*.md")):
            if path.name in ("index.md", "about.md"):
                continue
            label, text = split_label(path.read_text(encoding="utf-8"))
            pages.append(Page(f"pages/{safe_name(path.stem)}.html", "page.html", label or path.stem,
                              {"body": render_markdown(text)}))
        return pages


def build_site_model(manifest: dict, config: Config, cache: Cache) -> SiteModel:
    return _Builder(manifest, config, cache).build()
