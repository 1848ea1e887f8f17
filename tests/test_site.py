"""The site half on its own: pages built from a hand-written manifest (tests/handmade.py), no computing,
and no torch: this module imports none, and rendering is checked in a process that never loads it."""

import json
import subprocess
import sys
from pathlib import Path

import handmade
import pytest

from sitegen.config import parse
from sitegen.site import build_site_model
from sitegen.site.model import Asset
from sitegen.store.manifest import dump, load

HERE = Path(__file__).parent


@pytest.fixture
def site(tmp_path):
    (tmp_path / "neurons" / "conv").mkdir(parents=True)
    (tmp_path / "neurons" / "conv" / "1.md").write_text("# Whiskers\n\nFires on *whiskers*.\n")
    (tmp_path / "notes.md").write_text("# Notes\n\nA page of its own.\n")
    config = parse('[layers]\nuse = ["conv", "fc"]\n', tmp_path / "atlas.toml")
    return build_site_model(handmade.manifest(), config)


class Entries:
    """A cache that holds every member the site copies, each one byte."""

    def __init__(self, site):
        self.site = site

    def get(self, kind, key):
        return {asset.member: b"x" for asset in self.site.assets if asset.key == key}

    def names(self, kind, key):
        return set(self.get(kind, key))


def pages(site):
    return {page.path: page for page in site.pages}


def test_every_page_type_makes_its_pages(site):
    assert set(pages(site)) == {
        "index.html", "about.html", "search.html", "pages/notes.html", "images/cat.html", "layers/conv.html",
        "layers/fc.html", *(f"layers/conv/{n}.html" for n in range(4)), "layers/fc/0.html", "layers/fc/2.html"}
    assert set(site.files) == {"manifest.json", "search-index.js"}
    assert [item["title"] for item in site.nav] == ["Atlas", "conv", "fc", "About"]


def test_labels_come_from_notes_and_class_names(site):
    conv = pages(site)["layers/conv/1.html"].context
    assert conv["label"] == "Whiskers" and "<em>whiskers</em>" in conv["notes"]
    assert pages(site)["layers/fc/2.html"].context["label"] == "bird"


def test_parents_are_the_inverted_children_strongest_first(site):
    edges = pages(site)["layers/conv/1.html"].context["edges"]
    on_cat = edges["per_image"][0]["parents"]
    assert [(p["neuron"], p["weight"]) for p in on_cat] == [(2, 0.4), (0, 0.25)]
    assert [(p["neuron"], p["count"]) for p in edges["dataset"]["parents"]] == [(0, 2), (2, 1)]
    assert edges["lower"] is None and edges["per_image"][0]["children"] == []
    fc = pages(site)["layers/fc/0.html"].context["edges"]
    assert [c["neuron"] for c in fc["per_image"][0]["children"]] == [2, 1] and fc["upper"] is None


def test_a_neuron_page_shows_its_records(site):
    context = pages(site)["layers/conv/2.html"].context
    row = context["rows"][0]
    assert row["value"] == 1.5 and row["position"] == "(1, 0)" and row["specificity"] == 0.5
    assert row["photo_zoom"] == "assets/vis/conv/2/cat-guided-img.webp"
    assert [p["src"] for p in row["pictures"]] == ["assets/vis/conv/2/cat-guided.webp",
                                                   "assets/vis/conv/2/cat-gradient.webp"]
    assert [(p["rank"], p["value"], p["source"]) for p in context["patches"]] == [
        (1, 4.0, "photos/dog.png"), (2, 1.0, "photos/cat.png")]
    assert context["levels"][0]["percentile"] == "99"
    assert context["stats"][0]["name"] == "histogram" and context["stats"][0]["context"]["zero"] is not None
    assert (context["prev"], context["next"]) == (1, 3)
    optimized = pages(site)["layers/fc/2.html"].context["optimized"]
    assert optimized["own"] == 22.0 and optimized["other"] == 7.0 and optimized["objective"] == "its value"


def test_assets_name_their_cache_members(site):
    assert Asset("assets/patches/conv/1/1-gb.webp", "patch", "patch-1", "1-gb.webp") in site.assets
    # a patch's photo is one file per view and box, whichever neurons show it
    assert Asset("assets/patches/conv/views/2-img_0_0_2_2.webp", "patch", "patch-2", "img_0_0_2_2.webp") \
        in site.assets
    assert Asset("assets/vis/conv/3/cat-guided-box.webp", "vis", "vis-conv-guided", "3-box.webp") in site.assets
    assert Asset("assets/optimized/fc/2.png", "opt", "opt-fc", "2.png") in site.assets
    assert Asset("assets/photos/cat.jpg", "photo", "photo-cat", "photo.jpg") in site.assets


def test_the_image_tree_shows_each_path_where_it_lies(site):
    context = pages(site)["images/cat.html"].context
    tree = context["trees"][0]
    assert (tree["layer"], tree["neuron"], tree["label"], tree["id"]) == ("fc", 0, "cat", "n-fc-0")
    child = tree["children"][0]
    assert (child["layer"], child["neuron"], child["share"], child["id"]) == ("conv", 2, 0.6, "n-fc-0-conv-2")
    assert child["box"] == {"top": 25.0, "left": 25.0, "height": 50.0, "width": 50.0}  # of a 4 px image
    assert child["picture"] == "assets/trees/cat/n-fc-0-conv-2-picture.webp"
    assert Asset(child["photo"], "tree", "tree-0-2", "photo.webp") in site.assets
    neuron = pages(site)["layers/conv/3.html"].context["edges"]["per_image"][0]
    assert neuron["paths"] == [{"text": "fc/0 › conv/3", "share": 0.4, "url": "images/cat.html#n-fc-0-conv-3"}]
    conv = context["layers"][0]["neurons"]
    assert [n["neuron"] for n in conv] == [1, 2, 0, 3]  # most active first


def test_manifest_json_and_the_search_index(site):
    data = json.loads(site.files["manifest.json"])
    fc = data["layers"][1]
    assert fc["optimize"]["neurons"]["2"] == {"own": 22.0, "other": 7.0, "probe": 9.0}
    assert fc["neurons"][0]["top_patches"][0] == {"rank": 1, "value": 9.0, "box": [0, 0, 2, 2],
                                                  "source": "photos/cat.png", "view": "whole image", "scale": 0.5,
                                                  "label": None,
                                                  "photo": "assets/patches/fc/views/0-img_0_0_2_2.webp",
                                                  "guided": "assets/patches/fc/0/1-gb.webp"}
    conv = data["layers"][0]["neurons"][2]
    assert conv["featured"][0] == {"image": "photos/cat.png", "method": "guided", "scale": 0.1, "zoom_scale": 0.2,
                                   "picture": "assets/vis/conv/2/cat-guided.webp",
                                   "zoom": "assets/vis/conv/2/cat-guided-box.webp"}
    assert data["layers"][0]["effective_receptive_field"] == 3
    assert data["layers"][0]["sanity"] == {"guided": 0.95, "gradient": 0.31}
    assert data["layers"][1]["sanity"] == {"guided": 0.99, "gradient": None}
    assert {p for p in conv["top_patches"][0].values() if isinstance(p, str) and p.startswith("assets/")} <= {
        a.path for a in site.assets}
    assert data["featured"][0]["predictions"][0] == {"class": 0, "label": "cat", "prob": 0.7}
    assert set(data["definitions"]) >= {"guided", "deconv", "gradient", "optimize", "activation", "patch"}
    index = site.files["search-index.js"].decode()
    entries = json.loads(index[len("window.SITEGEN_INDEX = "):].rstrip().rstrip(";"))
    assert {"t": "conv/1 Whiskers", "u": "layers/conv/1.html"}.items() <= entries[3].items()


def test_the_manifest_survives_json():
    manifest = handmade.manifest()
    assert load(json.loads(json.dumps(dump(manifest)))) == manifest
    with pytest.raises(ValueError):
        load({"layers": []})  # an older manifest


RENDER = """
import sys
sys.path.insert(0, {here!r})
import handmade
from sitegen.check import check_site
from sitegen.config import parse
from sitegen.render import render
from sitegen.site import build_site_model
from sitegen.store.cache import Cache
from pathlib import Path

root = Path({root!r})
site = build_site_model(handmade.manifest(), parse('[layers]\\nuse = ["conv", "fc"]\\n', root / "atlas.toml"))
cache = Cache(root / "cache")
for asset in site.assets:
    cache.add(asset.kind, asset.key, {{asset.member: b"pixels"}})
render(site, root / "site", cache)
assert check_site(root / "site")[1] == []
assert "torch" not in sys.modules, "the site half imported torch"
"""


def test_rendering_needs_no_torch(tmp_path):
    script = RENDER.format(here=str(HERE), root=str(tmp_path))
    subprocess.run([sys.executable, "-c", script], check=True)
    neuron = (tmp_path / "site" / "layers" / "conv" / "1.html").read_text()
    assert "Hand-made &lt;atlas&gt;" in neuron and "Activation over 3 probe views" in neuron


def test_a_layer_of_many_neurons_is_split_into_linked_pages(tmp_path, monkeypatch):
    from sitegen.render import render
    from sitegen.site.pages import layer

    monkeypatch.setattr(layer, "PER_PAGE", 3)
    config = parse('[layers]\nuse = ["conv", "fc"]\n', tmp_path / "atlas.toml")
    site = build_site_model(handmade.manifest(), config)
    parts = [pages(site)[path] for path in ("layers/conv.html", "layers/conv/part-2.html")]
    assert [[tile["neuron"] for tile in part.context["tiles"]] for part in parts] == [[0, 1, 2], [3]]
    assert parts[1].title == "Layer conv, neurons 3 to 3" and parts[1].context["notes"] == ""
    assert pages(site)["layers/fc.html"].context["parts"] == []  # two neurons: one page

    render(site, tmp_path / "out", Entries(site))
    second = (tmp_path / "out" / "layers" / "conv" / "part-2.html").read_text()
    assert '<a href="../conv.html">0–2</a>' in second and 'aria-current="page">3–3</a>' in second
    assert pages(site)["layers/conv/3.html"].context["layer_page"] == "layers/conv/part-2.html"


def test_the_randomization_check_is_shown_beside_the_pictures(site, tmp_path):
    from sitegen.render import render

    render(site, tmp_path / "out", Entries(site))
    about = (tmp_path / "out" / "about.html").read_text()
    assert 'id="sanity"' in about and "Adebayo" in about
    assert '<span class="check fails" title="0.95, this picture barely depends on what conv learned' in about
    assert '<span class="check passes" title="0.31, this picture depends on what conv learned' in about
    assert ">zero<" in about  # fc's gradient pictures were all zero: no figure
    neuron = (tmp_path / "out" / "layers" / "conv" / "2.html").read_text()
    assert "Randomization check at conv: 0.95, this picture barely depends on what conv learned" in neuron
    assert "check 0.95: barely depends on conv" in neuron and "Gradient · check 0.31" in neuron
    layer = (tmp_path / "out" / "layers" / "conv.html").read_text()
    assert "Randomization check of its pictures: Guided backprop" in layer
