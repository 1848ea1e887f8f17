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
from sitegen.site.sheets import GUTTER, Member
from sitegen.store.manifest import dump, load

HERE = Path(__file__).parent


def measure(kind, key, member):
    """Every hand-made picture is 2 x 2 pixels, stored lossy."""
    return (2, 2, False)


def tiny() -> bytes:
    """A 2 x 2 picture."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 10, 10)).save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()


@pytest.fixture
def site(tmp_path):
    (tmp_path / "neurons" / "conv").mkdir(parents=True)
    (tmp_path / "neurons" / "conv" / "1.md").write_text("# Whiskers\n\nFires on *whiskers*.\n")
    (tmp_path / "notes.md").write_text("# Notes\n\nA page of its own.\n")
    config = parse('[layers]\nuse = ["conv", "fc"]\n', tmp_path / "atlas.toml")
    return build_site_model(handmade.manifest(), config, measure)


class Entries:
    """A cache that holds every member the site copies, each a 2 x 2 picture."""

    def __init__(self, site):
        self.site = site

    def get(self, kind, key):
        members = [Member(a.kind, a.key, a.member) for a in self.site.assets]
        members += [member for sheet in self.site.sheets for member in sheet.members]
        return {member.member: tiny() for member in members if member.key == key}

    def names(self, kind, key):
        return set(self.get(kind, key))

    def put(self, kind, key, members):
        """Composed sheets are not kept."""


def member_at(site, fragment):
    """The cache member a picture named ``sheet#xywh=x,y,w,h`` shows."""
    path, _, rect = fragment.partition("#xywh=")
    sheet = next(sheet for sheet in site.sheets if sheet.path == path)
    return sheet.members[sheet.rects.index(tuple(int(v) for v in rect.split(",")))]


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
    assert row["value"] == 1.5 and row["position"] == "row 1, column 0 of 2 x 2" and row["specificity"] == 0.5
    # the neuron's own pictures are in its sheet, one after another
    assert [p["src"].fragment() for p in row["pictures"]] == [
        f"assets/layers/conv/2.avif#xywh={GUTTER + (2 + 2 * GUTTER) * n},{GUTTER},2,2" for n in (0, 2)]
    assert member_at(site, row["photo_zoom"].fragment()) == Member("vis", "vis-conv-guided", "2-img.webp")
    assert [(p["rank"], p["value"], p["source"]) for p in context["patches"]] == [
        (1, 4.0, "photos/dog.png"), (2, 1.0, "photos/cat.png")]
    assert context["levels"][0]["percentile"] == "99th"
    assert context["stats"][0]["name"] == "histogram" and context["stats"][0]["context"]["zero"] is not None
    assert (context["prev"], context["next"]) == (1, 3)
    optimized = pages(site)["layers/fc/2.html"].context["optimized"]
    assert optimized["own"] == 22.0 and optimized["other"] == 7.0 and optimized["objective"] == "its value"


def test_a_patch_photo_that_one_neuron_shows_is_in_its_own_sheet_and_a_shared_one_in_the_layers():
    from dataclasses import replace

    from sitegen.site.links import Assets

    layer = handmade.manifest().layers[0]
    record = layer.neurons[0]
    alone = replace(record.top[0], box=(1, 1, 3, 3))  # no other neuron shows this box of this view
    layer = replace(layer, neurons=(replace(record, top=(alone, *record.top[1:])), *layer.neurons[1:]))
    assets = Assets(measure)
    assets.share_photos(layer)
    sheet = assets.own("conv", 0)
    assert assets.patch(sheet, 0, alone, "img").sheet.path == "assets/layers/conv/0.avif"
    assert assets.patch(sheet, 0, record.top[1], "img").sheet.path == "assets/layers/conv/photos.avif"
    assert assets.patch(sheet, 0, record.top[1], "guided").sheet.path == "assets/layers/conv/0.avif"  # its own


def test_pictures_are_packed_into_sheets_that_name_their_cache_members(site):
    sheets = {sheet.path: sheet for sheet in site.sheets}
    assert Member("patch", "patch-1", "1-gb.webp") in sheets["assets/layers/conv/1.avif"].members
    # a patch's photo that several neurons show (here, all of them) is in the layer's sheet of photos, once
    assert Member("patch", "patch-2", "img_0_0_2_2.webp") in sheets["assets/layers/conv/photos.avif"].members
    assert not any(member.member.startswith("img_") for member in sheets["assets/layers/conv/1.avif"].members)
    assert Member("vis", "vis-conv-guided", "3-box.webp") in sheets["assets/layers/conv/3.avif"].members
    assert Member("opt", "opt-fc", "2.png") in sheets["assets/layers/fc/2.avif"].members
    # the tiles of a layer, and its neurons on an image (where each looks, its picture there), in sheets of their own
    assert Member("patch", "patch-1", "1-gb.webp") in sheets["assets/layers/conv/tiles.avif"].members
    assert Member("vis", "vis-conv-guided", "2-box.webp") in sheets["assets/layers/conv/on-cat.avif"].members
    assert Member("tree", "tree-0-2", "photo.webp") in sheets["assets/trees/cat.avif"].members
    # a featured photo stays a file of its own; every other file is a sheet
    assert set(site.assets) == {Asset("assets/photos/cat.jpg", "photo", "photo-cat", "photo.jpg")}
    for sheet in site.sheets:  # no picture is twice in a sheet, and none overlaps another with its gutter
        assert len(set(sheet.members)) == len(sheet.members)
        cells = [(x - GUTTER, y - GUTTER, x + w + GUTTER, y + h + GUTTER) for x, y, w, h in sheet.rects]
        assert all(a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
                   for i, a in enumerate(cells) for b in cells[i + 1:])
        assert all(0 <= c[0] and 0 <= c[1] and c[2] <= sheet.width and c[3] <= sheet.height for c in cells)


def test_the_image_tree_shows_each_path_where_it_lies(site):
    context = pages(site)["images/cat.html"].context
    tree = context["trees"][0]
    assert (tree["layer"], tree["neuron"], tree["label"], tree["id"]) == ("fc", 0, "cat", "n-fc-0")
    child = tree["children"][0]
    assert (child["layer"], child["neuron"], child["share"], child["id"]) == ("conv", 2, 0.6, "n-fc-0-conv-2")
    assert child["box"] == {"top": 25.0, "left": 25.0, "height": 50.0, "width": 50.0}  # of a 4 px image
    assert child["picture"].sheet.path == child["photo"].sheet.path == "assets/trees/cat.avif"
    neuron = pages(site)["layers/conv/3.html"].context["edges"]["per_image"][0]
    assert neuron["paths"] == [{"text": "fc/0 › conv/3", "share": 0.4, "own": 0.4, "part": False,
                                "url": "images/cat.html#n-fc-0-conv-3"}]
    conv = context["layers"][0]["neurons"]
    assert [n["neuron"] for n in conv] == [1, 2, 0]  # most active first; conv/3, at -1 there, is not active


def test_a_neuron_page_says_when_its_top_views_are_of_few_photos(site):
    both_of_dog = pages(site)["layers/conv/1.html"].context  # its top 2: photos/dog.png and its mirror image
    assert both_of_dog["sources"] == [{"name": "photos/dog.png", "count": 2}]
    assert both_of_dog["view_kinds"] == "its mirror image"  # the probe set's views: whole, mirrored
    assert pages(site)["layers/conv/0.html"].context["sources"] == []  # a cat and a dog: nothing to say


def test_a_class_page_does_not_say_how_often_its_logit_is_strongly_on(tmp_path):
    """Half a logit's maximum moves with any constant added to every logit: a channel's page says how often
    it is strongly on, a class's does not, and says why."""
    from dataclasses import replace

    manifest = handmade.manifest()
    layers = tuple(replace(layer, neurons=tuple(
        replace(record, stats={**record.stats, "active": {"share": 0.25, "threshold": 1.0}})
        for record in layer.neurons)) for layer in manifest.layers)
    config = parse('[layers]\nuse = ["conv", "fc"]\n', tmp_path / "atlas.toml")
    shown = pages(build_site_model(replace(manifest, layers=layers), config, measure))
    assert [stat["name"] for stat in shown["layers/conv/2.html"].context["stats"]] == ["histogram", "active"]
    fc = shown["layers/fc/2.html"].context
    assert [stat["name"] for stat in fc["stats"]] == ["histogram"] and fc["layer"]["logits"]
    assert not shown["layers/conv/2.html"].context["layer"]["logits"]


def test_the_search_finds_a_neuron_by_the_classes_it_raises(tmp_path):
    from dataclasses import replace

    from sitegen.store.manifest import Effect

    manifest = handmade.manifest()
    conv = manifest.layers[0]
    raises = replace(conv.neurons[2], effects=(Effect(846, "table lamp", 0.5, 0.2), Effect(1, "goldfish", -0.1)))
    manifest = replace(manifest, layers=(replace(conv, neurons=(*conv.neurons[:2], raises, *conv.neurons[3:])),
                                         *manifest.layers[1:]))
    config = parse('[layers]\nuse = ["conv", "fc"]\n', tmp_path / "atlas.toml")
    text = build_site_model(manifest, config, measure).files["search-index.js"].decode()
    entries = json.loads(text[len("window.SITEGEN_INDEX = "):].rstrip().rstrip(";"))
    assert [entry["u"] for entry in entries if "table lamp" in entry["d"]] == ["layers/conv/2.html"]
    assert not [entry for entry in entries if "goldfish" in entry["d"]]  # a class it lowers does not find it


def test_manifest_json_and_the_search_index(site):
    data = json.loads(site.files["manifest.json"])
    fc = data["layers"][1]
    assert fc["optimize"]["neurons"]["2"] == {"own": 22.0, "other": 7.0, "probe": 9.0}
    assert fc["neurons"][0]["top_patches"][0] == {"rank": 1, "value": 9.0, "box": [0, 0, 2, 2],
                                                  "source": "photos/cat.png", "view": "whole image", "scale": 0.5,
                                                  "label": None,
                                                  "photo": fc["neurons"][0]["top_patches"][0]["photo"],
                                                  "guided": fc["neurons"][0]["top_patches"][0]["guided"]}
    patch = fc["neurons"][0]["top_patches"][0]
    assert member_at(site, patch["photo"]) == Member("patch", "patch-0", "img_0_0_2_2.webp")
    assert member_at(site, patch["guided"]) == Member("patch", "patch-0", "0-gb.webp")
    conv = data["layers"][0]["neurons"][2]
    assert conv["featured"][0] == {"image": "photos/cat.png", "method": "guided", "scale": 0.1, "zoom_scale": 0.2,
                                   "picture": conv["featured"][0]["picture"], "zoom": conv["featured"][0]["zoom"]}
    assert member_at(site, conv["featured"][0]["picture"]) == Member("vis", "vis-conv-guided", "2.webp")
    assert member_at(site, conv["featured"][0]["zoom"]) == Member("vis", "vis-conv-guided", "2-box.webp")
    assert data["layers"][0]["effective_receptive_field"] == 3
    assert data["layers"][0]["sanity"] == {"guided": 0.95, "gradient": 0.31}
    assert data["layers"][1]["sanity"] == {"guided": 0.99, "gradient": None}
    assert {p.partition("#")[0] for p in conv["top_patches"][0].values() if isinstance(p, str)
            and p.startswith("assets/")} <= {sheet.path for sheet in site.sheets}
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
site = build_site_model(handmade.manifest(), parse('[layers]\\nuse = ["conv", "fc"]\\n', root / "atlas.toml"),
                        lambda kind, key, member: (2, 2, False))
cache = Cache(root / "cache")
picture = Path({picture!r}).read_bytes()
for member in site.assets + [member for sheet in site.sheets for member in sheet.members]:
    cache.add(member.kind, member.key, {{member.member: picture}})
render(site, root / "site", cache)
assert check_site(root / "site")[1] == []
assert "torch" not in sys.modules, "the site half imported torch"
"""


def test_rendering_needs_no_torch(tmp_path):
    (tmp_path / "picture.webp").write_bytes(tiny())
    script = RENDER.format(here=str(HERE), root=str(tmp_path), picture=str(tmp_path / "picture.webp"))
    subprocess.run([sys.executable, "-c", script], check=True)
    neuron = (tmp_path / "site" / "layers" / "conv" / "1.html").read_text()
    assert "Hand-made &lt;atlas&gt;" in neuron and "Activation over 3 probe views" in neuron


def test_a_layer_of_many_neurons_is_split_into_linked_pages(tmp_path, monkeypatch):
    from sitegen.render import render
    from sitegen.site.pages import layer

    monkeypatch.setattr(layer, "PER_PAGE", 3)
    config = parse('[layers]\nuse = ["conv", "fc"]\n', tmp_path / "atlas.toml")
    site = build_site_model(handmade.manifest(), config, measure)
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
    assert "one from 0.50 as &ldquo;depends only in part&rdquo;" in about  # how the pages read a figure
    neuron = (tmp_path / "out" / "layers" / "conv" / "2.html").read_text()
    assert "Randomization check at conv: 0.95, this picture barely depends on what conv learned" in neuron
    assert "check 0.95: barely depends on conv" in neuron and "Gradient · check 0.31" in neuron
    layer = (tmp_path / "out" / "layers" / "conv.html").read_text()
    assert "Randomization check of its pictures: Guided backprop" in layer
    assert "Randomization check of guided backprop at conv: 0.95, this picture barely depends" in neuron  # patches
    image = (tmp_path / "out" / "images" / "cat.html").read_text()  # beside each layer's strip, and the trees
    assert ('randomization check</a> <span class="check fails" title="0.95, this picture barely depends on what '
            'conv learned (its own weights)">0.95</span>') in image
    assert ("does not measure these path pictures, but on guided backprop's whole pictures of fc's neurons it gives "
            '<span class="check fails">0.99</span>') in image


def test_a_layer_whose_pictures_are_not_guided_still_shows_its_guided_patches_check():
    from dataclasses import replace

    from sitegen.site.atlas import Atlas

    layer = replace(handmade.manifest().layers[0], methods=("gradient",))
    assert [(c["title"], c["figure"]) for c in Atlas.checks(layer)] == [
        ("Gradient", 0.31), ("Guided backprop (patches)", 0.95)]
    # patches by another method, or maps: guided backprop's check says why it is not shown
    maps = replace(layer, patches="map")
    assert [c["title"] for c in Atlas.checks(maps)] == [
        "Gradient", "Guided backprop (not shown: the patches show activation maps)"]
    deconv = replace(layer, patches="deconv", sanity={**layer.sanity, "deconv": 0.5})
    assert [c["title"] for c in Atlas.checks(deconv)] == [
        "Gradient", "Deconvnet (patches)", "Guided backprop (not shown: the patches show deconvnet)"]
    gradient = replace(layer, patches="gradient")  # a featured pictures' method: checked once
    assert [c["title"] for c in Atlas.checks(gradient)] == [
        "Gradient", "Guided backprop (not shown: the patches show gradient)"]


def test_a_method_is_named_in_a_sentence_in_lower_case_but_for_a_name():
    from sitegen.methods import BY_NAME

    assert [BY_NAME[m].phrase for m in ("guided", "deconv", "gradient", "smoothgrad")] == [
        "guided backprop", "deconvnet", "gradient", "SmoothGrad"]


def test_the_about_page_gives_smoothgrad_s_settings_beside_its_definition(tmp_path):
    from types import SimpleNamespace

    from sitegen.site.pages.about import settings

    text = '[layers]\nuse = ["conv", "fc"]\n[smoothgrad]\nsamples = 8\nnoise = 0.2\nseed = 3\n'
    atlas = SimpleNamespace(config=parse(text, tmp_path / "atlas.toml"))
    assert settings(atlas, "smoothgrad") == (" Here 8 copies, the noise's standard deviation 20% of the image's "
                                             "range, seed 3.")
    assert settings(atlas, "guided") == ""


def test_a_neuron_whose_costliest_class_is_not_its_first_order_first_says_so():
    from dataclasses import replace

    from sitegen.site.pages.neuron import costliest
    from sitegen.store.manifest import Effect

    record = handmade.manifest().layers[0].neurons[0]
    effects = (Effect(1, "dog", 0.5, 0.2), Effect(2, "cat", 0.4, 0.3), Effect(3, "cow", 0.3, None))
    assert costliest(replace(record, effects=effects)) == 1
    assert costliest(replace(record, effects=(effects[1], effects[0]))) is None  # the first is the costliest
    assert costliest(replace(record, effects=effects[:1])) is None  # one class computed exactly: nothing to say


def test_siblings_in_the_same_place_say_where_each_is_centred():
    from sitegen.site.pages.image import told_apart

    def part(where, left):
        return {"where": where, "box": {"top": 50.0, "left": left, "height": 50.0, "width": 25.0}}

    named = told_apart([part("the bottom right", 75.0), part("the bottom right", 50.0), part("the top", 0.0)])
    assert [p["where"] for p in named] == ["the bottom right, centred 88% across and 75% down",
                                           "the bottom right, centred 62% across and 75% down", "the top"]


def test_a_relative_below_zero_everywhere_on_an_image_says_so(tmp_path):
    """Its map there is blank, and its weight comes from a negative value: the caption gives its maximum."""
    from sitegen.site.atlas import Atlas
    from sitegen.store.manifest import Edge

    config = parse('[layers]\nuse = ["conv", "fc"]\n', tmp_path / "atlas.toml")
    manifest = handmade.manifest()
    atlas = Atlas(manifest, config, measure)
    tiles = atlas.relatives((Edge(3, 0.2), Edge(2, 0.1)), "conv", manifest.featured[0])
    assert [tile["below"] for tile in tiles] == [-1.0, None]  # conv/3 is -1.0 on the cat at most, conv/2 1.5
    assert [tile["below"] for tile in atlas.relatives((Edge(3, 0.2),), "conv", None)] == [None]  # over the dataset


def test_a_class_layer_page_says_how_many_of_its_classes_no_probe_view_is_taken_for(tmp_path):
    from dataclasses import replace

    from sitegen.render import render

    manifest = handmade.manifest()
    fc = manifest.layers[1]
    fc = replace(fc, neurons=(replace(fc.neurons[0], predicted=0), replace(fc.neurons[1], predicted=2)))
    config = parse('[layers]\nuse = ["conv", "fc"]\n', tmp_path / "atlas.toml")
    site = build_site_model(replace(manifest, layers=(manifest.layers[0], fc)), config, measure)
    render(site, tmp_path / "out", Entries(site))
    page = (tmp_path / "out" / "layers" / "fc.html").read_text()
    assert "The model predicts 1 of these 2 classes first on none of the probe views" in page
    assert "first on none" not in (tmp_path / "out" / "layers" / "conv.html").read_text()
