"""How the atlas was computed: the definitions, the model, the probe set, the image credits."""

from __future__ import annotations

from ...methods import BY_NAME, GUIDED, MAP, SMOOTHGRAD
from ..atlas import Atlas, agreement, check
from ..content import credits
from ..definitions import DEFINITIONS
from ..model import Page
from . import changes


def settings(atlas: Atlas, method: str) -> str:
    """What this atlas set for a method, where it has settings (SmoothGrad's noise)."""
    if method != SMOOTHGRAD:
        return ""
    smooth = atlas.config.smoothgrad
    return (f" Here {smooth.samples} copies, the noise's standard deviation {smooth.noise:.0%} of the image's "
            f"range, seed {smooth.seed}.")


SHORT = {"guided": "Guided", "deconv": "Deconv"}  # column titles of the check's table on a narrow screen


def build(atlas: Atlas) -> list[Page]:
    manifest = atlas.manifest
    _, extra = atlas.content.note("about.md")
    used = {f.name for f in manifest.featured} | {item.name for item in manifest.probe.items}
    shown = dict.fromkeys([*manifest.methods, *(m for layer in manifest.layers for m in layer.methods),
                           GUIDED,  # checked at every layer: the top patches' default method
                           *(layer.patches for layer in manifest.layers if layer.patches != MAP)])
    return [Page("about.html", "about.html", "About", {
        "extra": extra, "model": manifest.model, "definitions": DEFINITIONS,
        "methods": [{"name": m, "title": BY_NAME[m].title, "text": BY_NAME[m].definition + settings(atlas, m)}
                    for m in shown],
        "credits": credits(atlas.config, used), "probe": manifest.probe, "top_k": manifest.top_k,
        "per_photo": manifest.per_photo,
        "sitegen_version": manifest.version,
        "optimized_layers": [atlas.layer_summary(layer) for layer in manifest.layers if layer.optimized],
        "effects": [{**atlas.layer_summary(layer), "agreement": agreement(layer)}
                    for layer in manifest.layers if any(record.effects for record in layer.neurons)],
        "sanity": {"methods": [{"name": m, "title": BY_NAME[m].title, "short": SHORT.get(m, BY_NAME[m].title)}
                               for m in shown
                               if any(m in layer.sanity for layer in manifest.layers)],
                   "layers": [{**atlas.layer_summary(layer), "checks": {m: check(layer, m) for m in layer.sanity}}
                              for layer in manifest.layers if layer.sanity]},
        "compare": {"label": manifest.compare.label, "model": manifest.compare.before.model,
                    "score": changes.score_text()} if manifest.compare else None})]
