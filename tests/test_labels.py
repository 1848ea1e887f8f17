"""Labelled probe sets: classes from folders or a CSV file, neurons named by the classes of their top images,
class pages, and search by class."""

import json

import numpy as np
import pytest
from conftest import write_images
from PIL import Image
from typer.testing import CliRunner

from sitegen.check import check_site
from sitegen.cli import app
from sitegen.config import load
from sitegen.errors import SitegenError
from sitegen.pipeline.runner import compute

CONFIG = """
title = "Diagonals"
[model]
name = "diagnet:build"
weights = "none"
resize = 48
crop = 48
[layers]
use = ["relu", "fc"]
[images]
featured = ["featured.png"]
probe = ["probe"]
labels = "{labels}"
label_top = 6
[compute]
top_k = 3
batch_size = 4
methods = ["guided"]
"""


def stripes(folder, count, seed):
    """Bright diagonal lines on dark noise: what diagnet's channel 0 detects."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48]
    for index in range(count):
        pixels = rng.normal(40, 10, (48, 48, 3))
        pixels[(xx - yy + int(rng.integers(-20, 20))) % 12 == 0] = 250
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"s{index}.png")


def probe_set(root):
    stripes(root / "probe" / "stripes", 6, 0)
    write_images(root / "probe" / "blobs", 6, size=(48, 48), seed=1)
    write_images(root / "probe" / "noise", 6, size=(48, 48), seed=2)
    write_images(root, 1, size=(48, 48), seed=3)
    (root / "img0.png").rename(root / "featured.png")


def test_a_known_detector_is_named_by_its_class(tmp_path):
    probe_set(tmp_path)
    (tmp_path / "atlas.toml").write_text(CONFIG.format(labels="folders"))
    result = CliRunner().invoke(app, ["build", "--config", str(tmp_path / "atlas.toml"), "--cache",
                                      str(tmp_path / "cache"), "--out", str(tmp_path / "site"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    assert not check_site(site)[1]
    data = json.loads((site / "manifest.json").read_text())
    relu = next(layer for layer in data["layers"] if layer["name"] == "relu")
    detector = relu["neurons"][0]
    assert detector["classes"][0]["class"] == "stripes"
    assert detector["classes"][0]["share"] == 1.0 and detector["classes"][0]["selectivity"] == pytest.approx(3.0)
    assert detector["label"] == "stripes" and detector["label_automatic"]
    assert {p["label"] for p in detector["top_patches"]} == {"stripes"}
    page = (site / "layers" / "relu" / "0.html").read_text()
    assert 'class="label auto"' in page and ">stripes</span>" in page and 'id="classes"' in page
    layer_page = (site / "layers" / "relu.html").read_text()
    assert 'class="auto"' in layer_page
    class_page = (site / "classes" / "stripes.html").read_text()
    assert 'href="../layers/relu/0.html#classes"' in class_page
    assert "stripes" in (site / "classes.html").read_text()
    index = (site / "search-index.js").read_text()
    assert '"t":"Class stripes"' in index
    entry = next(e for e in json.loads(index.split("=", 1)[1].strip().rstrip(";"))
                 if e["t"].startswith("relu/0"))
    assert "stripes" in entry["t"] + entry["d"]


def test_labels_from_a_csv_file_and_files_without_one(tmp_path):
    probe_set(tmp_path)
    rows = [f"probe/stripes/s{i}.png,diagonal" for i in range(6)]  # no header: the first row is a file
    rows += [f"probe/{kind}/img{i}.png,other" for kind in ("blobs", "noise") for i in range(6)]
    # as a spreadsheet saves it: a byte-order mark and Windows line ends
    (tmp_path / "labels.csv").write_bytes(("\ufeff" + "\r\n".join(rows) + "\r\n").encode("utf-8"))
    (tmp_path / "atlas.toml").write_text(CONFIG.format(labels="labels.csv"))
    manifest, _ = compute(load(tmp_path / "atlas.toml"), tmp_path / "cache", device="cpu", quiet=True,
                          log=lambda line: None)
    assert {item.label for item in manifest.probe.items} == {"diagonal", "other"}
    assert manifest.layer("relu").neurons[0].classes[0].name == "diagonal"
    # relabelling recomputes nothing: only the manifest's counts and the probe set's key change
    (tmp_path / "labels.csv").write_text("\n".join(row.replace(",diagonal", ",stripes") for row in rows) + "\n")
    relabelled, computed = compute(load(tmp_path / "atlas.toml"), tmp_path / "cache", device="cpu", quiet=True,
                                   log=lambda line: None)
    assert computed == {} and relabelled.probe.hash != manifest.probe.hash
    assert relabelled.layer("relu").neurons[0].classes[0].name == "stripes"
    # a file the CSV does not name is an error naming it; so is a file right in the probe folder
    (tmp_path / "labels.csv").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(SitegenError, match=r"images.labels: 1 probe file\(s\) without a label in labels.csv: "
                                           r"probe/noise/img5.png"):
        compute(load(tmp_path / "atlas.toml"), tmp_path / "cache", device="cpu", quiet=True, log=lambda line: None)
    (tmp_path / "atlas.toml").write_text(CONFIG.format(labels="folders"))
    write_images(tmp_path / "probe", 1, size=(48, 48), seed=9)
    with pytest.raises(SitegenError, match=r"in no class folder .*probe/img0.png"):
        compute(load(tmp_path / "atlas.toml"), tmp_path / "cache", device="cpu", quiet=True, log=lambda line: None)


def test_a_labels_setting_that_is_no_file_is_named(tmp_path):
    (tmp_path / "atlas.toml").write_text(CONFIG.format(labels="nope.csv"))
    with pytest.raises(SitegenError, match="images.labels: 'nope.csv' is neither"):
        load(tmp_path / "atlas.toml")
