"""Manifest + Markdown content -> every page's view-model and every asset.

All data is gathered here before anything is written (MkDocs' "first gather
all data, then write").  This module and everything it imports run without
torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import markdown as md

from .cache import Cache
from .config import Config
from .images import expand

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
    "picture": ("Each picture shows g / max|g| * 0.5 + 0.5, one maximum over the whole picture, so zero is "
                "mid-grey and colours keep their balance. The whole image is shown, grey where the neuron "
                "cannot see."),
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
        ext = "jpg" if part == "img" else "png"
        suffix = f"-{part}" if part else ""
        return self.asset(f"assets/vis/{safe_name(layer)}/{neuron}/{featured['slug']}-{method}{suffix}.{ext}",
                          "vis", featured["vis"][layer][method], f"{neuron}{suffix}.{ext}")

    def patch(self, layer: str, neuron: int, patch: dict, which: str) -> str:
        ext = "jpg" if which == "img" else "png"
        return self.asset(f"assets/patches/{safe_name(layer)}/{neuron}/{patch['rank']}-{which}.{ext}", "patch",
                          patch["entry"], f"{neuron}-{which}.{ext}")

    # -- pages ---------------------------------------------------------------
    def build(self) -> SiteModel:
        labels = {}
        for layer in self.layers:
            for neuron in range(len(layer["neurons"])):
                labels[(layer["name"], neuron)] = self.note("neurons", safe_name(layer["name"]), f"{neuron}.md")
        self.labels = labels
        pages = [self.index_page(), self.about_page()]
        for index, layer in enumerate(self.layers):
            pages.append(self.layer_page(index, layer))
            for neuron in range(len(layer["neurons"])):
                pages.append(self.neuron_page(index, layer, neuron))
        for featured in self.featured:
            pages.append(self.image_page(featured))
        pages.extend(self.markdown_pages())
        nav = [{"title": "Atlas", "url": "index.html"}]
        nav += [{"title": layer["name"], "url": self.layer_url(layer["name"])} for layer in self.layers]
        nav += [{"title": "About", "url": "about.html"}]
        return SiteModel(self.m["title"], pages, self.assets, nav)

    def layer_summary(self, layer: dict) -> dict:
        shape = layer["shape"]
        rf = layer["rf_size"]
        return {"name": layer["name"], "path": layer["path"], "url": self.layer_url(layer["name"]),
                "neurons": shape[0], "shape": " x ".join(str(s) for s in shape),
                "kind": "channels" if len(shape) == 3 else "units",
                "rf": f"{rf[0]} x {rf[1]} px" if rf else "whole image"}

    def index_page(self) -> Page:
        _, intro = self.note("index.md")
        images = [{"slug": f["slug"], "name": f["name"], "url": self.image_url(f["slug"]), "photo": self.photo(f),
                   "predictions": f["predictions"][:3]} for f in self.featured]
        return Page("index.html", "index.html", self.m["title"], {
            "intro": intro, "layers": [self.layer_summary(layer) for layer in self.layers], "images": images,
            "model": self.m["model"], "probe": self.m["probe"], "total_neurons": sum(
                len(layer["neurons"]) for layer in self.layers)})

    def about_page(self) -> Page:
        _, extra = self.note("about.md")
        return Page("about.html", "about.html", "About", {
            "extra": extra, "model": self.m["model"], "methods": [
                {"name": m, "title": METHOD_TITLES[m], "text": DEFINITIONS[m]} for m in self.methods],
            "definitions": DEFINITIONS, "credits": self.credits(), "probe": self.m["probe"],
            "top_k": self.m["top_k"], "sitegen_version": self.m["sitegen_version"]})

    def credits(self) -> dict:
        """Each credit with the files it covers, and the used files that no credit covers."""
        credited, entries = set(), []
        for index, credit in enumerate(self.config.credits):
            files = expand(credit.files, self.config.root, f"credits[{index}].files")
            names = [p.resolve().relative_to(self.config.root.resolve()).as_posix()
                     if p.resolve().is_relative_to(self.config.root.resolve()) else p.name for p in files]
            credited.update(names)
            entries.append({"title": credit.title, "author": credit.author, "license": credit.license,
                            "source": credit.source, "files": names})
        used = {f["name"] for f in self.featured} | {item["name"] for item in self.probe_items}
        return {"entries": entries, "uncredited": sorted(used - credited)}

    def tile(self, layer: dict, neuron: int) -> dict:
        top = layer["neurons"][neuron]["top"]
        label, _ = self.labels[(layer["name"], neuron)]
        return {"neuron": neuron, "url": self.neuron_url(layer["name"], neuron), "label": label,
                "value": top[0]["value"], "img": self.patch(layer["name"], neuron, top[0], "img"),
                "gb": self.patch(layer["name"], neuron, top[0], "gb")}

    def layer_page(self, index: int, layer: dict) -> Page:
        _, notes = self.note("layers", f"{safe_name(layer['name'])}.md")
        tiles = [self.tile(layer, n) for n in range(len(layer["neurons"]))]
        return Page(self.layer_url(layer["name"]), "layer.html", f"Layer {layer['name']}", {
            "layer": self.layer_summary(layer), "notes": notes, "tiles": tiles,
            "below": self.layer_summary(self.layers[index - 1]) if index > 0 else None,
            "above": self.layer_summary(self.layers[index + 1]) if index + 1 < len(self.layers) else None})

    def neuron_page(self, index: int, layer: dict, neuron: int) -> Page:
        name = layer["name"]
        label, notes = self.labels[(name, neuron)]
        rows = []
        for featured in self.featured:
            values, positions = self.acts(featured, name)
            width = layer["shape"][2] if len(layer["shape"]) == 3 else 1
            row, col = divmod(int(positions[neuron]), width)
            zoom = layer["zoom"]
            rows.append({"slug": featured["slug"], "name": featured["name"], "url": self.image_url(featured["slug"]),
                         "photo": self.photo(featured), "value": float(values[neuron]),
                         "position": f"({row}, {col})" if len(layer["shape"]) == 3 else "",
                         "crop": self.vis(featured, name, neuron, self.methods[0], "img") if zoom else None,
                         "pictures": [{"method": m, "title": METHOD_TITLES[m],
                                       "src": self.vis(featured, name, neuron, m),
                                       "zoom": self.vis(featured, name, neuron, m, "box") if zoom else None}
                                      for m in self.methods]})
        patches = []
        for patch in layer["neurons"][neuron]["top"]:
            item = self.probe_items[patch["item"]]
            patches.append({"rank": patch["rank"], "value": patch["value"], "source": item["name"],
                            "view": item["view"], "img": self.patch(name, neuron, patch, "img"),
                            "gb": self.patch(name, neuron, patch, "gb")})
        count = len(layer["neurons"])
        return Page(self.neuron_url(name, neuron), "neuron.html", f"{name}/{neuron}", {
            "layer": self.layer_summary(layer), "neuron": neuron, "label": label, "notes": notes,
            "rows": rows, "methods": [{"name": m, "title": METHOD_TITLES[m]} for m in self.methods],
            "patches": patches, "top_k": self.m["top_k"],
            "prev": self.neuron_url(name, neuron - 1) if neuron > 0 else None,
            "next": self.neuron_url(name, neuron + 1) if neuron + 1 < count else None,
            "model": self.m["model"], "probe": self.m["probe"], "sitegen_version": self.m["sitegen_version"]})

    def image_page(self, featured: dict) -> Page:
        per_layer = []
        limit = self.config.site.active_neurons
        for layer in self.layers:
            values, _ = self.acts(featured, layer["name"])
            order = sorted(range(len(values)), key=lambda n: (-float(values[n]), n))[:limit]
            method = "guided" if "guided" in self.methods else self.methods[0]
            per_layer.append({"layer": self.layer_summary(layer), "method": METHOD_TITLES[method], "neurons": [
                {"neuron": n, "value": float(values[n]), "url": self.neuron_url(layer["name"], n),
                 "label": self.labels[(layer["name"], n)][0],
                 "crop": self.vis(featured, layer["name"], n, method, "img") if layer["zoom"] else None,
                 "vis": self.vis(featured, layer["name"], n, method, "box" if layer["zoom"] else "")}
                for n in order]})
        return Page(self.image_url(featured["slug"]), "image.html", featured["name"], {
            "image": {"name": featured["name"], "photo": self.photo(featured)},
            "predictions": featured["predictions"], "layers": per_layer})

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
