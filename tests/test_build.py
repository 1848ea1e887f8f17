"""End to end: a tiny atlas (a random-init model, generated images) built, checked and rebuilt."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, fragment, pictures_on, sheets_of, write_images
from typer.testing import CliRunner

from sitegen.check import check_site
from sitegen.cli import app
from sitegen.config import load
from sitegen.pipeline.runner import compute
from sitegen.store.manifest import dump

CONFIG = """
title = "Tiny <atlas>"
""" + TINY_MODEL + """[layers]
use = ["features.1", "features.4", "features.7", "fc"]
[images]
featured = ["imgs/img0.png", "imgs/img1.png"]
probe = ["imgs"]
probe_flip = true
probe_zooms = [1.0, 0.5]
[compute]
top_k = 4
batch_size = 4
[[credits]]
files = ["imgs/img0.png"]
license = "CC0"
title = "Noise"
"""
NEURONS = {"features.1": 6, "features.4": 8, "features.7": 10, "fc": 5}


@pytest.fixture
def atlas(tmp_path):
    write_images(tmp_path / "imgs", 4)
    write_images(tmp_path / "extra", 1, seed=5)  # a photo that is not a probe image
    (tmp_path / "atlas.toml").write_text(CONFIG)
    notes = tmp_path / "neurons" / "features.4"
    notes.mkdir(parents=True)
    (notes / "3.md").write_text("# Blob edge\n\nFires on the *rim* of the blob.\n")
    (tmp_path / "index.md").write_text("Hello **atlas**.\n")
    return tmp_path


def model_input(atlas, name):
    """A featured image as the tiny model sees it, made here without the pipeline."""
    import torch

    from sitegen.images import View, load_rgb, view_pixels
    from sitegen.model.registry import IMAGENET_MEAN, IMAGENET_STD

    pixels = view_pixels(load_rgb(atlas / "imgs" / name), View(), 40, 32, "bilinear")
    x = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_build_check_and_rebuild(atlas):
    site, cache = atlas / "site", atlas / "cache"
    code, output = run("build", "--config", atlas / "atlas.toml", "--out", site, "--cache", cache, "-q")
    assert code == 0, output

    # a page for every neuron of every layer, every featured image, every layer
    for layer, count in NEURONS.items():
        assert (site / "layers" / f"{layer}.html").is_file()
        pages = sorted(p.name for p in (site / "layers" / layer).glob("*.html"))
        assert pages == sorted(f"{n}.html" for n in range(count))
    assert (site / "images" / "img0.html").is_file() and (site / "images" / "img1.html").is_file()
    count, problems = check_site(site)
    assert problems == [] and count > 500

    neuron = (site / "layers" / "features.4" / "3.html").read_text()
    assert "Blob edge" in neuron and "<em>rim</em>" in neuron
    for title in ("Guided backprop", "Deconvnet", "Gradient"):
        for image in ("img0", "img1"):  # each from the neuron's own sheet (its lossless one where small)
            used = re.search(f'<svg class="pic g" viewBox="[0-9 ]+" role="img" aria-label="{title} of features.4/3 '
                             f'on imgs/{image}.png" width="160" height="160"><title>[^<]+</title><use '
                             f'href="#([^"]+)"/></svg>', neuron)
            assert used and re.fullmatch(r"\.\./\.\./assets/layers/features\.4/3(~lossless\.webp|\.avif)",
                                         sheets_of(neuron)[used[1]])
    for image in ("img0", "img1"):  # where it fires, on every neuron page of a layer with positions
        assert f'aria-label="Where features.4/3 fires on imgs/{image}.png"' in neuron
    assert " fires on imgs/" not in (site / "layers" / "fc" / "3.html").read_text()  # a unit has no map
    levels = compute(load(atlas / "atlas.toml"), cache, quiet=True)[0].layer("features.4").neurons[3].levels
    assert neuron.count('aria-label="Patch ') == 4 + len(levels)  # the top 4, and the 99th and 90th percentile
    assert "Tiny &lt;atlas&gt;" in neuron  # the title is escaped
    assert "Hello <strong>atlas</strong>." in (site / "index.html").read_text()
    about = (site / "about.html").read_text()
    assert "CC0" in about and "No credit is recorded for: imgs/img1.png, imgs/img2.png, imgs/img3.png" in about

    code, output = run("check", site)
    assert code == 0 and "all resolve" in output

    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    code, output = run("build", "--config", atlas / "atlas.toml", "--out", site, "--cache", cache, "-q")
    assert code == 0 and "computed nothing (all cached)" in output
    assert "0 changed, 0 removed" in output
    assert before == {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}


def test_only_new_work_is_computed(atlas):
    cache = atlas / "cache"
    config = load(atlas / "atlas.toml")
    _, first = compute(config, cache, quiet=True)
    # 2 featured images, and the other 2 files x (whole + centre and 4 corners at zoom 0.5) x 2 flips
    assert first["activations"] == 2 + 2 * 6 * 2
    _, again = compute(config, cache, quiet=True)
    assert again == {}

    # a new featured image (not a probe image) computes only that image's work: its activations, pictures,
    # their specificity and randomization check (one per layer), activation maps (of the channels), edges (of
    # the layers with one below), and its tree with the tree's check
    (atlas / "atlas.toml").write_text(CONFIG.replace('"imgs/img1.png"]', '"imgs/img1.png", "extra/img0.png"]'))
    _, more = compute(load(atlas / "atlas.toml"), cache, quiet=True)
    assert more.pop("tree nodes") >= 4  # its tree: the root, and its children down to the first layer
    assert more == {"activations": 1, "visualizations": sum(NEURONS.values()) * 3, "specificities": len(NEURONS),
                    "randomization checks": len(NEURONS), "tree checks": 1,
                    "activation maps": sum(NEURONS.values()) - NEURONS["fc"],
                    "edges": sum(NEURONS.values()) - NEURONS["features.1"]}

    # a larger top_k computes only the patches (and their edges) that enter the top 5, and the percentile
    # patches that leave it for another view
    (atlas / "atlas.toml").write_text(CONFIG.replace("top_k = 4", "top_k = 5"))
    _, patches = compute(load(atlas / "atlas.toml"), cache, quiet=True)
    mapped = sum(NEURONS.values())
    assert set(patches) <= {"patches", "edges"} and 0 < patches["patches"] <= 3 * mapped
    assert patches.get("edges", 0) <= mapped - NEURONS["features.1"]


def test_render_runs_without_torch(atlas):
    cache = atlas / "cache"
    compute(load(atlas / "atlas.toml"), cache, quiet=True)
    script = (
        "import sys; from typer.testing import CliRunner; from sitegen.cli import app; "
        f"r = CliRunner().invoke(app, ['render', '--config', {str(atlas / 'atlas.toml')!r}, "
        f"'--out', {str(atlas / 'site')!r}, '--cache', {str(cache)!r}]); "
        "assert r.exit_code == 0, r.output; "
        "assert 'torch' not in sys.modules, 'render imported torch'")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parent)
    assert (atlas / "site" / "index.html").is_file()


def test_stale_pages_are_removed_and_foreign_folders_refused(atlas):
    site, cache = atlas / "site", atlas / "cache"
    assert run("build", "-c", atlas / "atlas.toml", "-o", site, "--cache", cache, "-q")[0] == 0
    (atlas / "atlas.toml").write_text(CONFIG.replace('"features.7", ', ""))
    code, output = run("build", "-c", atlas / "atlas.toml", "-o", site, "--cache", cache, "-q")
    assert code == 0, output
    assert not (site / "layers" / "features.7.html").exists()
    assert not (site / "layers" / "features.7").exists()
    assert check_site(site)[1] == []

    foreign = atlas / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, output = run("render", "-c", atlas / "atlas.toml", "-o", foreign, "--cache", cache)
    assert code == 1 and "not made by sitegen" in output
    assert (foreign / "notes.txt").read_text() == "keep me"

    code, output = run("clean", "-o", site)
    assert code == 0 and not site.exists()


def test_config_errors_are_one_clear_message(atlas):
    (atlas / "atlas.toml").write_text(CONFIG.replace('"features.4"', '"features.44"'))
    code, output = run("build", "-c", atlas / "atlas.toml", "-o", atlas / "site", "--cache", atlas / "c", "-q")
    assert code == 1
    assert "unknown layer 'features.44'" in output and "Did you mean 'features.4'" in output
    assert "Traceback" not in output

    (atlas / "atlas.toml").write_text(CONFIG.replace("top_k = 4", "top_k = 400"))
    code, output = run("compute", "-c", atlas / "atlas.toml", "--cache", atlas / "c", "-q")
    assert code == 1 and "compute.top_k is 400 but the probe set has only 24 views" in output

    (atlas / "atlas.toml").write_text(CONFIG.replace('weights = "none"', 'weights = "missing.pth"'))
    code, output = run("compute", "-c", atlas / "atlas.toml", "--cache", atlas / "c", "-q")
    assert code == 1 and "missing.pth" in output and "does not exist" in output


def test_layers_command_lists_shapes_and_aliases():
    code, output = run("layers", "alexnet")
    assert code == 0
    assert "features.11" in output and "conv5" in output and "256 x 13 x 13" in output


def test_manifest_records_provenance(atlas):
    cache = atlas / "cache"
    manifest, _ = compute(load(atlas / "atlas.toml"), cache, quiet=True)
    assert manifest.model.fingerprint.startswith("tinynet:build:")
    assert manifest.probe.count == 24  # the featured images are not probe images
    top = manifest.layers[1].neurons[3].top
    assert [p.rank for p in top] == [1, 2, 3, 4]
    assert all(a.value >= b.value for a, b in zip(top, top[1:]))
    json.dumps(dump(manifest), allow_nan=False)


def test_edges_children_parents_and_trees(atlas):
    site, cache = atlas / "site", atlas / "cache"
    assert run("build", "-c", atlas / "atlas.toml", "-o", site, "--cache", cache, "-q")[0] == 0
    manifest, _ = compute(load(atlas / "atlas.toml"), cache, quiet=True)
    layers = {layer.name: layer for layer in manifest.layers}

    # children on an image are listed strongest first; dataset counts are out of top_k
    for layer_name, lower in (("features.4", "features.1"), ("features.7", "features.4"), ("fc", "features.7")):
        layer = layers[layer_name]
        assert layer.lower == lower
        for record in layer.neurons:
            children = record.children["img0"]
            weights = [edge.weight for edge in children]
            assert weights == sorted(weights, reverse=True) and len(children) <= min(8, NEURONS[lower])
            assert all(w > 0 for w in weights)
            assert all(0 <= edge.count <= 4 for edge in record.children["dataset"])

    # every neuron page above the first layer lists children, every one below the top lists parents
    page = (site / "layers" / "features.4" / "3.html").read_text()
    assert 'id="edges"' in page and "Children (features.1)" in page and "Parents (features.7)" in page
    assert '../features.1/' in page and '../features.7/' in page
    first = (site / "layers" / "features.1" / "0.html").read_text()
    assert "Children (" not in first and "Parents (features.4)" in first
    # a neuron no mapped upper neuron keeps among its children says why it has no parents there
    kept = {edge.neuron for record in layers["features.7"].neurons for edge in record.children["img0"]}
    orphan = next(n for n in layers["features.4"].mapped if n not in kept)
    text = (site / "layers" / "features.4" / f"{orphan}.html").read_text()
    assert ("None: it is not among the 8 strongest children of any features.7 neuron on this image"
            in text)

    # the tree starts at the top layer's most active unit and follows the children lists
    image = (site / "images" / "img0.html").read_text()
    assert 'class="tree"' in image
    top = layers["fc"]
    import torch

    from sitegen.model.registry import load_model

    with torch.no_grad():
        values = load_model("tinynet:build", "none").module(model_input(atlas, "img0.png"))[0].tolist()
    root = max(top.mapped, key=lambda n: (values[n], -n))
    assert f'href="../layers/fc/{root}.html"' in image
    first_child = top.neurons[top.mapped.index(root)].children["img0"][0].neuron
    assert image.index(f"../layers/fc/{root}.html") < image.index(f"../layers/features.7/{first_child}.html")
    assert check_site(site)[1] == []


def test_pipeline_edges_equal_the_api_on_the_same_image(atlas):
    import sitegen
    from sitegen.model.registry import load_model

    manifest, _ = compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)
    model = load_model("tinynet:build", "none").module
    weights = sitegen.edges(model, model_input(atlas, "img0.png"), "features.4", "features.7", list(range(10)))[0]
    layer = manifest.layer("features.7")
    for record in layer.neurons:
        neuron = record.neuron
        expected = [j for j in sorted(range(8), key=lambda j: (-float(weights[neuron, j]), j))
                    if weights[neuron, j] > 0]
        assert [edge.neuron for edge in record.children["img0"]] == expected
        assert [edge.weight for edge in record.children["img0"]] == pytest.approx(
            [float(weights[neuron, j]) for j in expected], rel=1e-4, abs=1e-6)


def test_status_says_what_would_be_computed_and_why(atlas):
    cache = atlas / "cache"
    code, output = run("status", "-c", atlas / "atlas.toml", "--cache", cache)
    assert code == 0 and "nothing computed yet" in output and "activations: 26 of 26 views" in output
    assert not (cache / "vis").exists()  # status computes nothing
    assert run("compute", "-c", atlas / "atlas.toml", "--cache", cache, "-q")[0] == 0
    code, output = run("status", "-c", atlas / "atlas.toml", "--cache", cache)
    assert "activations: 0 of 26 views" in output and "top patches: 0 to compute" in output
    assert "optimized" not in output  # nothing of a product the config does not have
    (atlas / "atlas.toml").write_text(CONFIG.replace("top_k = 4", "top_k = 6")
                                      .replace('"imgs/img1.png"]', '"imgs/img1.png", "extra/img0.png"]'))
    code, output = run("status", "-c", atlas / "atlas.toml", "--cache", cache)
    assert "top_k changed: 4 -> 6" in output and "new featured images: extra/img0.png" in output
    assert "activations: 1 of 27 views" in output


def test_damaged_statistics_and_specificity_are_recomputed_in_one_build(atlas):
    site, cache = atlas / "site", atlas / "cache"
    assert run("build", "-c", atlas / "atlas.toml", "-o", site, "--cache", cache, "-q")[0] == 0
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    victims = [sorted((cache / kind).rglob("*.zip"))[0] for kind in ("stats", "spec")]
    for victim in victims:  # a flipped byte in a member's data: its checksum no longer matches
        data = bytearray(victim.read_bytes())
        data[40] ^= 0xFF
        victim.write_bytes(bytes(data))
    code, output = run("build", "-c", atlas / "atlas.toml", "-o", site, "--cache", cache, "-q")
    assert code == 0, output
    for victim in victims:
        assert f"warning: cache entry {victim.parent.parent.name}/{victim.stem} is damaged: removed" in output
    assert before == {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}


def test_new_weights_recompute_and_switching_back_costs_nothing(atlas):
    import torch

    from sitegen.model.registry import load_model

    cache = atlas / "cache"
    _, first = compute(load(atlas / "atlas.toml"), cache, quiet=True)
    other = load_model("tinynet:build", "none").module
    with torch.no_grad():
        other.fc.bias.add_(1.0)  # retrained, say
    torch.save(other.state_dict(), atlas / "retrained.pth")
    (atlas / "atlas.toml").write_text(CONFIG.replace('weights = "none"', 'weights = "retrained.pth"'))
    _, retrained = compute(load(atlas / "atlas.toml"), cache, quiet=True)
    assert retrained == first  # everything again, for the new weights
    (atlas / "atlas.toml").write_text(CONFIG)
    _, back = compute(load(atlas / "atlas.toml"), cache, quiet=True)
    assert back == {}


def test_provenance_manifest_and_search_index(atlas):
    site = atlas / "site"
    assert run("build", "-c", atlas / "atlas.toml", "-o", site, "--cache", atlas / "cache", "-q")[0] == 0
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["model"]["fingerprint"].startswith("tinynet:build:") and manifest["probe"]["count"] == 24
    layer = next(layer for layer in manifest["layers"] if layer["name"] == "features.4")
    patch = layer["neurons"][3]["top_patches"][0]
    assert patch["rank"] == 1 and patch["source"].startswith("imgs/img") and "value" in patch
    assert "definitions" in manifest and manifest["methods"] == ["guided", "deconv", "gradient"]

    index = (site / "search-index.js").read_text()
    assert index.startswith("window.SITEGEN_INDEX = ")
    entries = json.loads(index[len("window.SITEGEN_INDEX = "):].rstrip().rstrip(";"))
    assert {"t": "features.4/3 Blob edge", "u": "layers/features.4/3.html"}.items() <= next(
        e for e in entries if e["u"] == "layers/features.4/3.html").items()
    assert "rim" in next(e for e in entries if e["u"] == "layers/features.4/3.html")["d"]
    computed = compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)[0]
    spec = {layer.name: [record.featured["img0"].specificity for record in layer.neurons] for layer in computed.layers}
    assert set(spec) == set(NEURONS) and all(0 <= v <= 2 for values in spec.values() for v in values)
    assert "specificity" in (site / "layers" / "features.4" / "3.html").read_text()
    for page in ("index.html", "layers/features.4/3.html", "search.html"):
        text = (site / page).read_text()
        assert "manifest.json" in text and "probe views (set" in text


def test_patches_below_the_top(atlas):
    """With 24 probe views and the top 4 left out, the 99th and 90th percentiles' nearest views would be one:
    each percentile gets its own view, and its place among the probe views as a plain forward ranks it."""
    from sitegen.pipeline.workspace import Workspace
    from sitegen.site.model import ordinal
    from sitegen.store.cache import Cache

    manifest, _ = compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)
    with Workspace.open(load(atlas / "atlas.toml"), Cache(atlas / "cache"), "cpu", quiet=True, encode=False) as ws:
        images = ws.tensor([ws.pixels(item) for item in ws.probe])
        kept = {}
        handle = ws.modules["features.7"].register_forward_hook(lambda _m, _i, out: kept.update(out=out))
        with torch.no_grad():
            ws.model.module(images)
        handle.remove()
    highest = kept["out"].amax(dim=(2, 3))  # [views, channels]: each view's value, the maximum over positions
    assert manifest.probe.count == 24
    for record in manifest.layer("features.7").neurons:
        values = highest[:, record.neuron]
        levels = {level.percentile: level for level in record.levels}
        assert set(levels) == {99.0, 90.0}
        items = [level.item for level in record.levels]
        assert not set(items) & {patch.item for patch in record.top} and len(set(items)) == 2
        for level in record.levels:
            assert level.value == pytest.approx(float(values[level.item]), rel=1e-5, abs=1e-6)
            assert level.place == 1 + int((values > values[level.item] + 1e-6).sum())
            assert level.place > 4 or level.value >= record.top[-1].value - 1e-6  # below the top patches but for ties
        assert levels[99.0].value >= levels[90.0].value
    site = atlas / "site"
    assert run("render", "-c", atlas / "atlas.toml", "-o", site, "--cache", atlas / "cache")[0] == 0
    record = next(record for record in manifest.layer("features.7").neurons if record.levels[0].place > 4)
    page = (site / "layers" / "features.7" / f"{record.neuron}.html").read_text()
    assert "nearest the 99th and 90th percentiles" in page and "the highest percentiles fall among the top" in page
    assert f"{ordinal(record.levels[0].place)} of 24 · activation <span" in page
    assert f'{ordinal(record.levels[0].place)} highest of 24 probe views"' in page
    assert check_site(site)[1] == []


def test_featured_images_join_the_probe_set_when_asked(atlas):
    (atlas / "atlas.toml").write_text(CONFIG.replace("probe_flip = true",
                                                     "probe_flip = true\nfeatured_in_probe = true"))
    manifest, _ = compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)
    assert manifest.probe.count == 48
    assert {"imgs/img0.png", "imgs/img1.png"} <= {item.name for item in manifest.probe.items}


def test_manifest_json_names_every_file_a_neuron_page_shows(atlas):
    site = atlas / "site"
    assert run("build", "-c", atlas / "atlas.toml", "-o", site, "--cache", atlas / "cache", "-q")[0] == 0
    data = json.loads((site / "manifest.json").read_text())
    layer = next(layer for layer in data["layers"] if layer["name"] == "features.4")
    assert layer["effective_receptive_field"] % 2 == 1  # measured, odd: centred on a pixel
    neuron = layer["neurons"][3]
    shown = {(sheet, rect): alt for sheet, rect, alt in pictures_on(site, neuron["page"])}
    for patch in neuron["top_patches"]:  # the pictures the page shows, in the sheet beside it
        assert shown[fragment(patch["photo"])] == f"Patch {patch['rank']} from {patch['source']}"
        assert shown[fragment(patch["guided"])] == f"Guided backprop patch {patch['rank']}" and patch["scale"] > 0
        assert (site / fragment(patch["guided"])[0]).is_file()
    assert {(f["image"], f["method"]) for f in neuron["featured"]} == {
        (image, method) for image in ("imgs/img0.png", "imgs/img1.png") for method in ("guided", "deconv", "gradient")}
    titles = {"guided": "Guided backprop", "deconv": "Deconvnet", "gradient": "Gradient"}
    for picture in neuron["featured"]:
        title = titles[picture["method"]]
        assert shown[fragment(picture["picture"])] == f"{title} of features.4/3 on {picture['image']}"
        assert shown[fragment(picture["zoom"])] == f"{title} where the neuron looks" and picture["scale"] > 0


def test_methods_in_another_order(atlas):
    methods = 'batch_size = 4\nmethods = ["deconv", "guided"]'
    (atlas / "atlas.toml").write_text(CONFIG.replace("batch_size = 4", methods))
    site = atlas / "site"
    code, output = run("build", "-c", atlas / "atlas.toml", "-o", site, "--cache", atlas / "cache", "-q")
    assert code == 0, output
    assert check_site(site)[1] == []
    assert "Gradient" not in (site / "layers" / "features.4" / "3.html").read_text().split("<thead>")[1][:200]


def api_step(node):
    """A tree node's last step as the API takes it: (layer, neuron), or (layer, [channels]) for a part."""
    return (node.layer, [edge.neuron for edge in node.group]) if node.group else (node.layer, node.neuron)


def test_trees_of_neurons_rank_children_by_path_weights(atlas):
    """In a tree of neurons, each node's children are the lower layer's neurons with the largest positive
    weights under the path from the root: the API's path weights, computed here on the model itself."""
    import sitegen
    from sitegen.model.registry import load_model

    (atlas / "atlas.toml").write_text(CONFIG + '[trees]\nnodes = "neurons"\n')
    manifest, _ = compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)
    model = load_model("tinynet:build", "none").module
    x = model_input(atlas, "img0.png")
    root = manifest.featured[0].trees[0]
    assert (root.layer, root.weight, root.share, root.relative) == ("fc", None, None, 1.0)
    widths = {0: 4, 1: 3, 2: 2}

    def check(path, node, depth):
        if not node.children:
            return
        lower = node.children[0].layer
        weights = sitegen.path_edges(model, x, [[(n.layer, n.neuron) for n in path]], lower)[0, 0]
        expected = [j for j in sorted(range(len(weights)), key=lambda j: (-float(weights[j]), j))
                    if weights[j] > 0][:widths[depth]]
        assert [child.neuron for child in node.children] == expected
        total = float(weights.clamp(min=0).sum())
        for child in node.children:
            assert not child.group and child.value is not None
            assert child.weight == pytest.approx(float(weights[child.neuron]), rel=1e-4, abs=1e-7)
            assert child.share == pytest.approx(child.weight / total, rel=1e-4)
            top, left, bottom, right = child.box
            assert 0 <= top <= bottom < 32 and 0 <= left <= right < 32
            check(path + [child], child, depth + 1)
        assert node.coverage == pytest.approx(sum(child.share for child in node.children))

    check([root], root, 0)
    assert root.children and root.children[0].children  # two levels at least
    site = atlas / "site"
    assert run("render", "-c", atlas / "atlas.toml", "-o", site, "--cache", atlas / "cache")[0] == 0
    page = (site / "images" / "img0.html").read_text()
    child = root.children[0]
    anchor = f'id="n-fc-{root.neuron}-features.7-{child.neuron}"'
    assert anchor in page and "of its parent's positive weight" in page
    neuron = (site / "layers" / "features.7" / f"{child.neuron}.html").read_text()
    assert f'../../images/img0.html#n-fc-{root.neuron}-features.7-{child.neuron}' in neuron
    data = json.loads((site / "manifest.json").read_text())
    tree = data["featured"][0]["trees"][0]
    assert (tree["layer"], tree["neuron"], tree["weight"]) == ("fc", root.neuron, None)
    assert [c["neuron"] for c in tree["children"]] == [c.neuron for c in root.children]
    assert [c["neurons"] for c in tree["children"]] == [[{"neuron": c.neuron, "weight": pytest.approx(c.weight,
                                                                                                   rel=1e-3)}]
                                                        for c in root.children]
    assert (site / fragment(tree["children"][0]["picture"])[0]).is_file()


def test_trees_of_parts_add_up(atlas):
    """In a tree of parts (the default), each node's children are disjoint groups that hold every channel of
    the layer below with positive weight under its path, and nothing else; a part's weight is its members'
    summed, each member's the API's path weight under the path through the groups above it, so the shares
    add up to 1 at every node.  The site and manifest.json show the parts."""
    import sitegen
    from sitegen.model.registry import load_model

    manifest, _ = compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)
    model = load_model("tinynet:build", "none").module
    x = model_input(atlas, "img0.png")
    root = manifest.featured[0].trees[0]
    parts = {0: 5, 1: 3, 2: 2}
    seen, sizes = [], []

    def check(path, node, depth):
        if not node.children:
            return
        lower = node.children[0].layer
        weights = sitegen.path_edges(model, x, [[api_step(n) for n in path]], lower)[0, 0]
        positive = {j for j in range(len(weights)) if weights[j] > 0}
        members = [[edge.neuron for edge in child.group] for child in node.children]
        assert sorted(j for group in members for j in group) == sorted(positive)  # disjoint, all of them
        assert 1 <= len(node.children) <= parts[depth]
        total = float(weights[sorted(positive)].sum())
        for child, group in zip(node.children, members):
            assert child.value is None and child.neuron == child.group[0].neuron
            assert [edge.weight for edge in child.group] == pytest.approx([float(weights[j]) for j in group],
                                                                          rel=1e-4, abs=1e-7)
            assert child.weight == pytest.approx(float(weights[group].sum()), rel=1e-4, abs=1e-7)
            assert child.share == pytest.approx(child.weight / total, rel=1e-4)
            check(path + [child], child, depth + 1)
        assert [child.weight for child in node.children] == sorted((c.weight for c in node.children), reverse=True)
        assert node.coverage == pytest.approx(1.0, abs=1e-6)
        seen.append(len(node.children))
        sizes.extend(len(child.group) for child in node.children)

    check([root], root, 0)
    assert max(seen) > 1 and len(seen) > 3  # nodes of several parts, on more than one level
    assert max(sizes) > 1  # parts of several channels somewhere: k-means ran
    site = atlas / "site"
    assert run("render", "-c", atlas / "atlas.toml", "-o", site, "--cache", atlas / "cache")[0] == 0
    assert check_site(site)[1] == []
    page = (site / "images" / "img0.html").read_text()
    first = root.children[0]
    anchor = f'id="n-fc-{root.neuron}-features.7-g{min(e.neuron for e in first.group)}"'
    assert anchor in page and "rests on" in page and "Its " in page and "carry 100%" in page
    data = json.loads((site / "manifest.json").read_text())
    check = data["featured"][0]["tree_checks"][0]  # the tree's own randomization check, on its page
    figure, nodes = manifest.featured[0].tree_checks[0]
    assert check == {"figure": pytest.approx(figure, abs=1e-4), "nodes": nodes} and nodes > 1
    assert f"each path kept, over {nodes} of the tree's nodes: <span" in page
    tree = data["featured"][0]["trees"][0]
    assert tree["coverage"] == pytest.approx(1.0, abs=1e-4)
    assert [[m["neuron"] for m in c["neurons"]] for c in tree["children"]] == \
        [[e.neuron for e in c.group] for c in root.children]
    assert sum(c["share"] for c in tree["children"]) == pytest.approx(1.0, abs=1e-3)
    # a channel of a part: its page gives its own share of the parent's weight beside its part's
    def below(node):
        for child in node.children:
            yield child
            yield from below(child)

    part = max(below(root), key=lambda c: len(c.group))  # one of several channels (k-means ran, above)
    member = part.group[-1]
    own = part.share * member.weight / part.weight
    assert own < part.share
    neuron_page = (site / "layers" / part.layer / f"{member.neuron}.html").read_text()
    assert (f"{part.layer} (a part of {len(part.group)} channels)</a>: it carries <b>{100 * own:.1f}%</b> of its "
            f"parent's positive weight, its part {100 * part.share:.0f}%") in neuron_page


def test_a_tree_node_lies_where_its_neuron_gives_most():
    """A node's square: where the sum of its positive contributions is highest, at least a quarter of the
    image's side, moved into the image; the whole image where the layer has no effective field."""
    from sitegen.engine.geometry import Geometry
    from sitegen.pipeline.stages.trees import placed

    geometry = Geometry(jump=(4, 4), lo=(-2, -2), hi=(5, 5))  # 8 x 8 fields every 4 pixels of a 64-pixel image
    contributions = torch.zeros(16, 16)
    contributions[12, 3] = 5.0  # one strong position ...
    contributions[2:6, 9:13] = 1.0  # ... outweighed by a block of 16 weaker ones
    contributions[0, 0] = -50.0  # a negative part pulls nothing
    top, left, bottom, right = placed(8, geometry, contributions, 64)
    assert bottom - top + 1 == right - left + 1 == 16  # the field's 8 pixels grown to a quarter of 64
    # every position of the block has its centre inside
    assert top <= 2 * 4 + 1 and bottom >= 5 * 4 + 1 and left <= 9 * 4 + 1 and right >= 12 * 4 + 1
    assert placed(32, geometry, contributions, 64)[2] - placed(32, geometry, contributions, 64)[0] + 1 == 32
    assert placed(None, geometry, contributions, 64) == (0, 0, 63, 63)
    assert placed(8, geometry, torch.tensor(3.0), 64) == (0, 0, 63, 63)  # no positions: the whole image


def test_smoothgrad_pictures_in_the_atlas_are_the_api_s(atlas):
    """The atlas's SmoothGrad pictures of a layer are sitegen.visualize's with the config's noise: the scale of
    every neuron's whole picture as the page shows it agrees."""
    import sitegen
    from sitegen.engine.pictures import display
    from sitegen.images import WHOLE_SIDE
    from sitegen.model.registry import load_model

    text = CONFIG.replace("[images]", '[layers.methods]\n"features.4" = ["guided", "smoothgrad"]\n[images]')
    (atlas / "atlas.toml").write_text(text + "[smoothgrad]\nsamples = 3\nnoise = 0.3\nseed = 4\n")
    manifest, _ = compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)
    model = load_model("tinynet:build", "none").module
    grads = sitegen.visualize(model, model_input(atlas, "img1.png"), "features.4", list(range(8)), "smoothgrad",
                              samples=3, noise=0.3, seed=4)[0]
    _, scales = display(grads, WHOLE_SIDE)
    layer = manifest.layer("features.4")
    assert layer.methods == ("guided", "smoothgrad")
    got = [record.featured["img1"].scales["smoothgrad"][0] for record in layer.neurons]
    assert got == pytest.approx(scales.tolist(), rel=1e-4)
    assert got != pytest.approx([record.featured["img1"].scales["guided"][0] for record in layer.neurons], rel=1e-2)
    exit_code, output = run("render", "-c", atlas / "atlas.toml", "--cache", atlas / "cache", "-o", atlas / "site")
    assert exit_code == 0, output
    assert "SmoothGrad" in (atlas / "site" / "layers" / "features.4" / "3.html").read_text()
    assert "Smilkov" in (atlas / "site" / "about.html").read_text()


def test_a_class_page_says_on_how_many_probe_views_the_model_predicts_it(tmp_path):
    from sitegen.pipeline.workspace import Workspace
    from sitegen.store.cache import Cache

    write_images(tmp_path / "imgs", 3)
    (tmp_path / "atlas.toml").write_text("""[model]
name = "resnet18"
weights = "none"
resize = 40
crop = 32
[layers]
use = ["layer4", "fc"]
neurons = { fc = 4 }
[images]
featured = ["imgs/img0.png"]
featured_in_probe = true
probe = ["imgs"]
probe_flip = true
[compute]
top_k = 2
methods = ["gradient"]
""")
    config = load(tmp_path / "atlas.toml")
    manifest, _ = compute(config, tmp_path / "cache", quiet=True)
    with Workspace.open(config, Cache(tmp_path / "cache"), "cpu", quiet=True, encode=False) as ws:
        images = ws.tensor([ws.pixels(item) for item in ws.probe])
        with torch.no_grad():
            first = ws.model.module(images).argmax(dim=1).tolist()  # the top prediction on each probe view
    fc = manifest.layer("fc")
    counts = {record.neuron: record.predicted for record in fc.neurons}
    assert counts == {neuron: first.count(neuron) for neuron in fc.mapped}
    assert any(counts.values())  # the featured image is a probe view: its top class is predicted there
    assert all(record.predicted is None for record in manifest.layer("layer4").neurons)
    site = tmp_path / "site"
    assert run("render", "-c", tmp_path / "atlas.toml", "-o", site, "--cache", tmp_path / "cache")[0] == 0
    for neuron, count in counts.items():
        page = (site / "layers" / "fc" / f"{neuron}.html").read_text()
        assert (f" first on {count} of the 6 probe views." in page if count else
                " first on none of the 6 probe views: the probe set holds nothing" in page)


def test_patches_as_activation_maps(atlas):
    """With features.7's patches as maps, each top patch's picture is that view's channel, from a plain forward
    pass, laid over the photo and cut to the patch's box; its scale is the channel's maximum there. The pages
    and manifest.json say so, and features.4 keeps guided backprop."""
    from PIL import Image

    from sitegen.engine.pictures import activation_map
    from sitegen.errors import SitegenError
    from sitegen.images import PATCH_SIDE, cut, fit
    from sitegen.pipeline.workspace import Workspace
    from sitegen.store import members
    from sitegen.store.cache import Cache

    guided, _ = compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)
    text = CONFIG.replace("[images]", '[layers.patches]\n"features.7" = "map"\n[images]')
    (atlas / "atlas.toml").write_text(text)
    manifest, computed = compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)
    assert computed["patches"] > 0 and "edges" not in computed and "visualizations" not in computed  # maps alone
    layer = manifest.layer("features.7")
    assert layer.patches == "map" and manifest.layer("features.4").patches == "guided"
    with Workspace.open(load(atlas / "atlas.toml"), Cache(atlas / "cache"), "cpu", quiet=True, encode=False) as ws:
        kept = {}
        handle = ws.modules["features.7"].register_forward_hook(lambda _m, _i, out: kept.update(out=out))
        for record in layer.neurons:
            for patch in (*record.top, *record.levels):
                pixels = ws.pixels(ws.probe[patch.item])
                with torch.no_grad():
                    ws.model.module(ws.tensor([pixels]))
                channel = kept["out"][0, record.neuron]
                position = int(channel.flatten().argmax())
                entry = ws.cache.get(members.PATCHES, patch.key)
                stored = entry[members.patch_picture("map")(record.neuron)]
                stored = np.asarray(Image.open(io.BytesIO(stored)).convert("RGB"))
                top, _, bottom, _ = patch.box
                ring = (bottom - top + 1) * 2 > pixels.shape[0]  # ringed where the patch is most of the view
                expected = fit(cut(activation_map(pixels, channel, position, ring), patch.box), PATCH_SIDE)
                assert np.array_equal(stored, expected)
                assert patch.scale == pytest.approx(float(channel.max()), rel=1e-5)
                assert patch.value == pytest.approx(float(channel.max()), rel=1e-5)
        handle.remove()
    site = atlas / "site"
    assert run("render", "-c", atlas / "atlas.toml", "-o", site, "--cache", atlas / "cache")[0] == 0
    assert check_site(site)[1] == []
    data = json.loads((site / "manifest.json").read_text())
    neurons = {entry["name"]: entry["neurons"] for entry in data["layers"]}
    record = neurons["features.7"][0]
    shown = {(sheet, rect): alt for sheet, rect, alt in pictures_on(site, record["page"])}
    for patch in record["top_patches"]:
        assert "guided" not in patch and shown[fragment(patch["map"])] == f"Activation map patch {patch['rank']}"
    assert "guided" in neurons["features.4"][0]["top_patches"][0]
    page = (site / record["page"]).read_text()
    assert "where the neuron fires on it: its activation map" in page
    assert "where the neuron fires on it" in (site / "layers" / "features.7.html").read_text()
    below = [path.read_text() for path in (site / "layers" / "features.4").glob("*.html")]
    assert all("Parents (features.7, where it fires)" in text for text in below)  # on each image: their maps
    assert any(re.search(r'aria-label="Where features\.7/\d+ fires there"', text) for text in below)
    (atlas / "atlas.toml").write_text(CONFIG)  # back to guided: its pictures and scales, kept beside the maps
    again, computed = compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)
    assert "patches" not in computed and again.layer("features.7") == guided.layer("features.7")
    (atlas / "atlas.toml").write_text(CONFIG.replace("[images]", '[layers.patches]\nfc = "map"\n[images]'))
    with pytest.raises(SitegenError, match=r'layers.patches.fc: "map" needs a layer of channels'):
        compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)


def test_patches_by_another_method_are_the_api_s(atlas):
    """With features.7's patches by SmoothGrad, each top patch's picture is sitegen.visualize's on that view with
    the config's noise, cut to the patch's box: their scales agree, and the pages name the method and its check."""
    import sitegen
    from sitegen.engine.pictures import cut as cut_gradients
    from sitegen.engine.pictures import display
    from sitegen.images import PATCH_SIDE
    from sitegen.pipeline.workspace import Workspace
    from sitegen.store.cache import Cache

    text = CONFIG.replace("[images]", '[layers.patches]\n"features.7" = "smoothgrad"\n[images]')
    (atlas / "atlas.toml").write_text(text + "[smoothgrad]\nsamples = 3\nnoise = 0.3\nseed = 4\n")
    manifest, _ = compute(load(atlas / "atlas.toml"), atlas / "cache", quiet=True)
    layer = manifest.layer("features.7")
    assert layer.patches == "smoothgrad"
    with Workspace.open(load(atlas / "atlas.toml"), Cache(atlas / "cache"), "cpu", quiet=True, encode=False) as ws:
        for record in layer.neurons[:4]:
            for patch in record.top:
                image = ws.tensor([ws.pixels(ws.probe[patch.item])])
                grads = sitegen.visualize(ws.model.module, image, "features.7", [record.neuron], "smoothgrad",
                                          samples=3, noise=0.3, seed=4)[0]
                _, scales = display(cut_gradients(grads, [patch.box]), PATCH_SIDE)
                assert patch.scale == pytest.approx(float(scales[0]), rel=1e-4)
    site = atlas / "site"
    assert run("render", "-c", atlas / "atlas.toml", "-o", site, "--cache", atlas / "cache")[0] == 0
    assert check_site(site)[1] == []
    page = (site / "layers" / "features.7" / "0.html").read_text()
    assert "the photo beside its SmoothGrad picture" in page and "Randomization check of SmoothGrad at" in page
    assert 'aria-label="SmoothGrad patch 1"' in page
    data = json.loads((site / "manifest.json").read_text())
    assert "smoothgrad" in next(entry for entry in data["layers"] if entry["name"] == "features.7")["neurons"][0][
        "top_patches"][0]
    assert set(layer.sanity) == {"guided", "deconv", "gradient", "smoothgrad"}  # the patches' method is checked
    assert "SmoothGrad (patches) <span" in (site / "layers" / "features.7.html").read_text()
