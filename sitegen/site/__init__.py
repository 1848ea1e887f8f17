"""The site half: the typed manifest and the Markdown content -> every page's view-model, then files.

All data is gathered before anything is written (MkDocs' "first gather all data, then write"); each page
type is one module of ``pages``.  Nothing here imports torch.
"""

from __future__ import annotations

from ..config import Config
from ..store.manifest import Manifest
from .atlas import Atlas
from .links import layer_url
from .model import File, Page, SiteModel
from .pages import PAGE_TYPES
from .sheets import Measure


def build_site_model(manifest: Manifest, config: Config, measure: Measure) -> SiteModel:
    """``measure``: the size of a picture in the cache (``sheets.measure``), for placing it in its sheet."""
    atlas = Atlas(manifest, config, measure)
    pages: list[Page] = []
    files: dict[str, bytes] = {}
    for page_type in PAGE_TYPES:
        for made in page_type.build(atlas):
            if isinstance(made, File):
                files[made.path] = made.data
            else:
                pages.append(made)
    nav = [{"title": "Atlas", "url": "index.html"}]
    nav += [{"title": layer.name, "url": layer_url(layer.name)} for layer in manifest.layers]
    nav += [{"title": "Changes", "url": "changes.html"}] if manifest.compare else []
    nav += [{"title": "Classes", "url": "classes.html"}] if any(item.label for item in manifest.probe.items) else []
    nav += [{"title": "About", "url": "about.html"}]
    model = manifest.model
    provenance = {"version": manifest.version, "model": model.name, "fingerprint": model.fingerprint,
                  "probe_count": manifest.probe.count, "probe_hash": manifest.probe.hash}
    both = [atlas.assets] + ([atlas.before.assets] if atlas.before else [])
    return SiteModel(manifest.title, pages, [a for assets in both for a in assets.listed], nav, files, provenance,
                     [sheet for assets in both for sheet in assets.packer.sheets])
