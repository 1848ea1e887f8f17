"""[compare]: an atlas against another checkpoint of its model (sitegen/pipeline/compare.py, stats/compare.py)."""

import itertools
import json

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, write_images
from tinynet import build

from sitegen.config import load
from sitegen.pipeline.runner import compute
from sitegen.stats.compare import assignment, change_score, correlations

CONFIG = """
title = "Tiny"
""" + TINY_MODEL + """[layers]
use = ["features.1", "features.4", "features.7", "fc"]
[images]
featured = ["imgs/img0.png"]
probe = ["imgs"]
probe_flip = true
probe_zooms = [1.0, 0.5]
[compute]
top_k = 3
batch_size = 4
methods = ["guided"]
[compare]
weights = "other.pth"
label = "epoch 1"
match = "{match}"
"""
PERMUTATION = [3, 0, 7, 5, 1, 6, 2, 4]  # of features.3's 8 output channels


def permuted() -> dict:
    """The tiny model with features.3's channels permuted and features.6's inputs to match: the same function,
    its layer features.4's channel j is the original's channel PERMUTATION[j]."""
    state = build().state_dict()
    state["features.3.weight"] = state["features.3.weight"][PERMUTATION]
    state["features.3.bias"] = state["features.3.bias"][PERMUTATION]
    state["features.6.weight"] = state["features.6.weight"][:, PERMUTATION]
    return state


def reinitialised(channels: list[int]) -> dict:
    """The tiny model with some of features.3's filters replaced by new random ones."""
    state = build().state_dict()
    generator = torch.Generator().manual_seed(7)
    for c in channels:
        state["features.3.weight"][c] = torch.randn(state["features.3.weight"][c].shape, generator=generator) * 0.3
        state["features.3.bias"][c] = 0.1
    return state


def atlas(tmp_path, state: dict, match: str = "index"):
    write_images(tmp_path / "imgs", 5)
    torch.save(state, tmp_path / "other.pth")
    (tmp_path / "atlas.toml").write_text(CONFIG.format(match=match))
    config = load(tmp_path / "atlas.toml")
    manifest, _ = compute(config, tmp_path / "cache", device="cpu", quiet=True, log=lambda line: None)
    return config, manifest


def changes(manifest, layer):
    return next(c for c in manifest.compare.layers if c.name == layer).neurons


def test_the_same_weights_change_nothing(tmp_path):
    _, manifest = atlas(tmp_path, build().state_dict())
    assert manifest.compare.label == "epoch 1"
    for layer in manifest.compare.layers:
        assert [c.match for c in layer.neurons] == [c.neuron for c in layer.neurons]
        for c in layer.neurons:
            assert c.correlation == pytest.approx(1.0)
            assert c.top_overlap == 1.0
            assert c.edge_overlap in (None, 1.0)
            assert c.change == pytest.approx(0.0, abs=1e-9)
            assert c.status == ""
    # the other atlas is the same atlas: same top patches; the randomization check is this atlas's alone
    for mine, theirs in zip(manifest.layers, manifest.compare.before.layers):
        assert [[p.item for p in r.top] for r in mine.neurons] == [[p.item for p in r.top] for r in theirs.neurons]
        assert mine.sanity and not theirs.sanity


def test_permuted_channels_are_matched_back(tmp_path):
    _, manifest = atlas(tmp_path, permuted(), match="activations")
    found = {c.neuron: c.match for c in changes(manifest, "features.4")}
    assert all(PERMUTATION[found[n]] == n for n in range(8))
    for layer in manifest.compare.layers:  # the same function, neuron for neuron
        assert all(c.change == pytest.approx(0.0, abs=1e-6) for c in layer.neurons), layer.name
    # matched by index instead, the permuted layer looks changed
    _, by_index = atlas(tmp_path / "index", permuted(), match="index")
    assert max(c.change for c in changes(by_index, "features.4")) > 0.3


def test_replaced_filters_are_the_most_changed_of_their_layer(tmp_path):
    replaced = [2, 5]
    _, manifest = atlas(tmp_path, reinitialised(replaced))
    scores = {c.neuron: c.change for c in changes(manifest, "features.4")}
    ranked = sorted(scores, key=lambda n: -scores[n])
    assert set(ranked[:2]) == set(replaced)
    assert all(scores[n] == pytest.approx(0.0, abs=1e-6) for n in scores if n not in replaced)
    assert all(c.change == pytest.approx(0.0, abs=1e-6) for c in changes(manifest, "features.1"))


def test_the_assignment_is_optimal_not_greedy():
    # greedy takes 0->0 (0.9) and is left with 1->1 (0.0): 0.9; the optimum is 0.8 + 0.8
    score = np.array([[0.9, 0.8], [0.8, 0.0]])
    assert assignment(score).tolist() == [1, 0]
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 7))
        s = rng.normal(size=(n, n))
        match = assignment(s)
        best = max(sum(s[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
        assert sum(s[i, match[i]] for i in range(n)) == pytest.approx(best)


def test_correlations_over_chunks_and_constant_neurons():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(40, 3))
    a[:, 2] = 0.0  # dead
    b = np.stack([a[:, 1] * 2 + 1, -a[:, 0], np.zeros(40)], axis=1)
    r, peaks_a, _ = correlations([(a[:15], b[:15]), (a[15:], b[15:])])
    assert r[1, 0] == pytest.approx(1.0) and r[0, 1] == pytest.approx(-1.0)
    assert r[2, 2] == 1.0 and r[2, 0] == 0.0  # dead in both: unchanged; dead against alive: nothing shared
    assert peaks_a[2] == 0.0
    assert change_score(1.0, 1.0, None) == 0.0 and change_score(-0.5, 0.0, 0.0) == 1.0
    # constant but not zero (a square that rounds): the same constant is unchanged, another one is not
    a, b = np.full((300, 2), 3.7), np.full((300, 2), 3.7)
    b[:, 1] = 0.1
    r, _, _ = correlations([(a[:100], b[:100]), (a[100:], b[100:])])
    assert r[0, 0] == 1.0 and r[0, 1] == 0.0


def test_the_pages_and_changes_json_agree(tmp_path):
    from typer.testing import CliRunner

    from sitegen.check import check_site
    from sitegen.cli import app

    write_images(tmp_path / "imgs", 5)
    torch.save(reinitialised([2, 5]), tmp_path / "other.pth")
    (tmp_path / "atlas.toml").write_text(CONFIG.format(match="activations"))
    result = CliRunner().invoke(app, ["build", "--config", str(tmp_path / "atlas.toml"), "--cache",
                                      str(tmp_path / "cache"), "--out", str(tmp_path / "site"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    links, problems = check_site(site)
    assert not problems
    data = json.loads((site / "changes.json").read_text())
    assert data["against"] == "epoch 1" and data["match"] == "activations"
    layers = {layer["name"]: layer["neurons"] for layer in data["layers"]}
    assert set(layers) == {"features.1", "features.4", "features.7", "fc"}
    changes_page = (site / "changes.html").read_text()
    for neuron in layers["features.4"]:
        page = (site / "layers" / "features.4" / f"{neuron['neuron']}.html").read_text()
        assert 'id="before"' in page
        assert f"Change <span class=\"num\">{neuron['change']:.2f}</span>" in page
        assert f"layers/features.4/{neuron['neuron']}.html#before" in changes_page
        assert 0.0 <= neuron["change"] <= 1.0
    most = max(layers["features.4"], key=lambda n: n["change"])
    assert most["neuron"] in (2, 5)
    assert "before/assets/" in changes_page  # the other checkpoint's tiles, from its own files
    assert (site / "search-index.js").read_text().count('"c":') == sum(len(n) for n in layers.values())
    assert "Changes" in (site / "index.html").read_text()
    status = CliRunner().invoke(app, ["status", "--config", str(tmp_path / "atlas.toml"), "--cache",
                                      str(tmp_path / "cache")])
    assert status.exit_code == 0, status.output
    assert "compare with epoch 1:" in status.output


def test_the_comparison_is_cached_and_costs_nothing_when_nothing_changed(tmp_path):
    from dataclasses import replace

    config, _ = atlas(tmp_path, build().state_dict())  # [compare] with the same weights as the model's
    alone = replace(config, compare=None)
    cold = tmp_path / "cold"
    _, by_itself = compute(alone, cold, device="cpu", quiet=True, log=lambda line: None)
    _, with_compare = compute(config, cold, device="cpu", quiet=True, log=lambda line: None)
    assert sum(by_itself.values()) > 0 and sum(with_compare.values()) == 0  # the same weights: the same entries
    # another checkpoint, turned off and on again: nothing is computed the second time
    torch.save(reinitialised([1]), tmp_path / "other.pth")
    config = load(tmp_path / "atlas.toml")
    _, first = compute(config, cold, device="cpu", quiet=True, log=lambda line: None)
    _, off = compute(replace(config, compare=None), cold, device="cpu", quiet=True, log=lambda line: None)
    _, on = compute(config, cold, device="cpu", quiet=True, log=lambda line: None)
    assert sum(first.values()) > 0 and sum(off.values()) == 0 and sum(on.values()) == 0


def test_matched_neurons_that_the_first_pass_did_not_map_are_mapped(tmp_path):
    write_images(tmp_path / "imgs", 5)
    torch.save(permuted(), tmp_path / "other.pth")
    text = CONFIG.format(match="activations").replace('use = ["features.1", "features.4", "features.7", "fc"]',
                                                      'use = ["features.1", "features.4", "features.7", "fc"]\n'
                                                      'neurons = { "features.4" = [0, 1] }')
    (tmp_path / "atlas.toml").write_text(text)
    manifest, _ = compute(load(tmp_path / "atlas.toml"), tmp_path / "cache", device="cpu", quiet=True,
                          log=lambda line: None)
    found = {c.neuron: c.match for c in changes(manifest, "features.4")}
    assert found == {0: PERMUTATION.index(0), 1: PERMUTATION.index(1)}
    assert manifest.compare.before.layer("features.4").mapped == tuple(sorted(found.values()))
    assert all(c.change == pytest.approx(0.0, abs=1e-6) for c in changes(manifest, "features.4"))
