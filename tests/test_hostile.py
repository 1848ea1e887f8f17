"""What a hostile user tried: names too long for a file system or not UTF-8, NaN weights and activations, config
mistakes found late, serve outside the site, full disks, swapped entries, odd files in a probe folder, a
truncated manifest, labels on a small probe set (sitegen's answer to each, one test or more per item)."""

import errno
import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL, write_images
from test_labels import stripes
from typer.testing import CliRunner

from sitegen.check import check_site
from sitegen.cli import app

CONFIG = TINY_MODEL + """[layers]
use = ["features.3", "fc"]
[images]
featured = ["imgs/img0.png"]
probe = ["imgs"]
[compute]
top_k = 2
methods = ["guided"]
"""


def run(root: Path, *args: str, config: str = "atlas.toml"):
    """``sitegen ARGS`` on the atlas in ``root``, its cache in ``root/cache`` and its site in ``root/site``."""
    extra = [] if args[0] in ("clean", "serve", "check") else ["--config", str(root / config)]
    where = {"build": ["--cache", str(root / "cache"), "--out", str(root / "site"), "-q"],
             "compute": ["--cache", str(root / "cache"), "-q"],
             "render": ["--cache", str(root / "cache"), "--out", str(root / "site")]}.get(args[0], [])
    return CliRunner().invoke(app, [*args, *extra, *where])


def names_fit(site: Path) -> None:
    """Every name in the site is a name a file system takes, and every link resolves."""
    for path in site.rglob("*"):
        assert len(path.name.encode("utf-8", "surrogateescape")) <= 255, path.name
    assert not check_site(site)[1]


# 1. names longer than a file system allows

def test_long_names_of_files_classes_and_labels_are_shortened_and_stay_apart(tmp_path):
    write_images(tmp_path / "imgs", 1)
    long_file = "f" * 220 + ".png"
    (tmp_path / "imgs" / "img0.png").rename(tmp_path / long_file)
    for index, folder in enumerate(["c" * 250, "c" * 249 + "d", "short"]):
        write_images(tmp_path / "probe" / folder, 2, seed=index)
    (tmp_path / "atlas.toml").write_text(CONFIG.replace('featured = ["imgs/img0.png"]', f'featured = ["{long_file}"]')
                                         .replace('probe = ["imgs"]', 'probe = ["probe"]\nlabels = "folders"'))
    result = run(tmp_path, "build")
    assert result.exit_code == 0, result.output
    names_fit(tmp_path / "site")
    classes = sorted(p.name for p in (tmp_path / "site" / "classes").iterdir())
    assert len(classes) == 3 and len(set(classes)) == 3  # two long names that share 249 letters stay apart
    # a CSV label of 5,000 characters
    rows = [f"{p.relative_to(tmp_path).as_posix()},{'x' * 5000 if 'short' in str(p) else 'y'}"
            for p in sorted((tmp_path / "probe").rglob("*.png"))]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    text = (tmp_path / "atlas.toml").read_text().replace('labels = "folders"', 'labels = "labels.csv"')
    (tmp_path / "atlas.toml").write_text(text)
    result = run(tmp_path, "build")
    assert result.exit_code == 0, result.output
    names_fit(tmp_path / "site")
    assert "x" * 5000 in (tmp_path / "site" / "classes.html").read_text()  # shown whole, only the file is short


def test_a_record_of_names_that_cannot_exist_neither_bricks_a_render_nor_clean(tmp_path):
    write_images(tmp_path / "imgs", 3)
    (tmp_path / "atlas.toml").write_text(CONFIG)
    assert run(tmp_path, "build").exit_code == 0
    site = tmp_path / "site"
    record = site / ".sitegen-files"
    record.write_text(record.read_text() + "classes/" + "z" * 300 + ".html\n")  # as an older render recorded
    result = run(tmp_path, "render")
    assert result.exit_code == 0, result.output
    assert "z" * 300 not in record.read_text()
    record.write_text(record.read_text() + "classes/" + "z" * 300 + ".html\n")
    (site / "stray.html").mkdir()  # a path it recorded that is now a folder: it cannot remove it, and says so
    (site / "stray.html" / "keep").write_text("mine")
    record.write_text(record.read_text() + "stray.html\n")
    result = CliRunner().invoke(app, ["clean", "--out", str(site)])
    assert result.exit_code == 0, result.output
    assert "could not remove stray.html" in result.output
    assert sorted(p.relative_to(site).as_posix() for p in site.rglob("*")) == [
        ".sitegen-files", ".sitegen-lock", "stray.html", "stray.html/keep"]
    assert record.read_text() == "stray.html\n"  # kept for the next try, and nothing else


# 2. NaN and infinite weights; NaN activations of finite weights

def test_nan_weights_are_refused_before_anything_is_computed_naming_file_and_tensor(tmp_path):
    import tinynet

    write_images(tmp_path / "imgs", 3)
    state = tinynet.build().state_dict()
    state["features.3.weight"][1, 2, 0, 0] = float("nan")
    state["fc.bias"][0] = float("inf")
    torch.save(state, tmp_path / "broken.pth")
    (tmp_path / "atlas.toml").write_text(CONFIG.replace('weights = "none"', 'weights = "broken.pth"'))
    result = run(tmp_path, "build")
    assert result.exit_code == 1 and "broken.pth" in result.output and "'features.3.weight'" in result.output
    assert "1 NaN and 0 infinite of 432 values" in result.output
    assert not (tmp_path / "cache").exists() and not (tmp_path / "site").exists()
    torch.save(tinynet.build().state_dict(), tmp_path / "good.pth")
    (tmp_path / "atlas.toml").write_text(CONFIG.replace('weights = "none"', 'weights = "good.pth"')
                                         + '[compare]\nweights = "broken.pth"\n')
    result = run(tmp_path, "build")
    assert result.exit_code == 1 and "compare.weights:" in result.output and "broken.pth" in result.output
    assert not (tmp_path / "cache").exists()


def test_nan_activations_are_reported_per_layer_and_manifest_json_stays_json(tmp_path):
    write_images(tmp_path / "imgs", 3)
    (tmp_path / "atlas.toml").write_text(CONFIG.replace("tinynet:build", "nannet:build")
                                         .replace('use = ["features.3", "fc"]', 'use = ["features.2", "features.5"]'))
    result = run(tmp_path, "build")
    assert result.exit_code == 0, result.output
    assert "warning: layer features.2: 1 of 6 mapped neurons have activations that are not finite" in result.output
    assert "warning: layer features.5: 8 of 8 mapped neurons" in result.output  # the next conv mixes channel 0 in

    def no_constants(name):
        raise AssertionError(f"manifest.json holds {name}")

    data = json.loads((tmp_path / "site" / "manifest.json").read_text(), parse_constant=no_constants)
    assert data["notes"] and "written as null" in data["notes"][0]
    assert "not finite numbers" in (tmp_path / "site" / "layers" / "features.2.html").read_text()


# 3. config mistakes that only showed once computing had started

def test_config_mistakes_about_layers_are_all_reported_before_anything_is_written(tmp_path):
    write_images(tmp_path / "imgs", 3)
    (tmp_path / "atlas.toml").write_text(CONFIG.replace('use = ["features.3", "fc"]', 'use = ["fc", "features.3"]')
                                         .replace("[images]", '[layers.neurons]\n"features.3" = [2, 99999]\n'
                                                                 'fc = [1, 5, 7]\n[images]'))
    result = run(tmp_path, "build")
    assert result.exit_code == 1
    assert "layers.use: fc, features.3 are not listed lowest first" in result.output
    assert "['features.3', 'fc']" in result.output
    assert "layers.neurons.features.3: 99999 out of range: features.3 has 8 neurons (0 to 7)" in result.output
    assert "layers.neurons.fc: 5, 7 out of range: fc has 5 neurons (0 to 4)" in result.output
    assert not (tmp_path / "cache").exists() and not (tmp_path / "site").exists()
    twice = CONFIG.replace('use = ["features.3", "fc"]', 'use = ["fc", "features.3", "fc"]')
    (tmp_path / "atlas.toml").write_text(twice)
    result = run(tmp_path, "build")
    assert result.exit_code == 1 and "layers.use: 'fc' listed more than once" in result.output


# 4. a file name that is not UTF-8

@pytest.mark.skipif(os.name != "posix", reason="a name of raw bytes")
def test_a_file_name_that_is_not_utf8_is_shown_with_a_replacement_character(tmp_path):
    write_images(tmp_path / "imgs", 3)
    os.rename(tmp_path / "imgs" / "img2.png", os.fsencode(tmp_path / "imgs") + b"/caf\xe9.png")
    (tmp_path / "atlas.toml").write_text(CONFIG)
    result = run(tmp_path, "build")
    assert result.exit_code == 0, result.output
    names_fit(tmp_path / "site")
    assert "imgs/caf\ufffd.png" in (tmp_path / "site" / "search-index.js").read_text(encoding="utf-8")
    assert "imgs/caf\ufffd.png" in (tmp_path / "site" / "manifest.json").read_text(encoding="utf-8")


# 5. serve: nothing outside the site, and a port that is no port

def test_serve_answers_only_from_inside_the_site(tmp_path):
    import http.server

    from sitegen.serve import SiteHandler

    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "index.html").write_text("home")
    (site / "sub" / "page.html").write_text("page")
    (tmp_path / "secret.txt").write_text("secret")
    (site / "passwd").symlink_to("/etc/passwd")
    (site / "etc").symlink_to("/etc")
    (site / "secret.txt").symlink_to(tmp_path / "secret.txt")
    (site / "inside.html").symlink_to(site / "sub" / "page.html")  # a link within the site is fine
    (site / "folder").mkdir()
    (site / "folder" / "index.html").symlink_to(tmp_path / "secret.txt")  # what a folder's URL serves
    (site / "sheet.avif").write_bytes(b"\x00\x00\x00\x1cftypavif")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: SiteHandler(*a, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"

    def status(path):
        try:
            with urllib.request.urlopen(base + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""

    try:
        assert status("index.html") == (200, "home") and status("inside.html") == (200, "page")
        with urllib.request.urlopen(base + "sheet.avif", timeout=10) as response:  # a sheet, as a browser needs it
            assert response.headers["Content-Type"] == "image/avif"
        for path in ("passwd", "etc/", "etc/passwd", "secret.txt", "sub/../../secret.txt", "%2e%2e/secret.txt",
                     "folder/", "folder/index.html"):
            assert status(path)[0] == 404, path
    finally:
        server.shutdown()
        server.server_close()
    result = CliRunner().invoke(app, ["serve", "--out", str(site), "--port", "70000"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: --port: 70000 is not a port number (1 to 65535)"


# 6. a full disk, a swapped entry, odd files in a probe folder, a truncated manifest

def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    import sitegen.render

    write_images(tmp_path / "imgs", 3)
    (tmp_path / "atlas.toml").write_text(CONFIG)
    assert run(tmp_path, "compute").exit_code == 0
    real = os.fdopen

    class Full:
        def __init__(self, handle, mode, **options):
            self.file = real(handle, mode, **options)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sitegen.render.os, "fdopen", Full)
    result = run(tmp_path, "render")
    assert result.exit_code == 1
    assert "No space left on device" in result.output and str(tmp_path / "site") in result.output


def test_render_refuses_a_swapped_entry_before_writing_anything(tmp_path):
    write_images(tmp_path / "imgs", 3)
    (tmp_path / "atlas.toml").write_text(CONFIG)
    assert run(tmp_path, "compute").exit_code == 0
    entries = sorted((tmp_path / "cache" / "vis").rglob("*.zip"))
    entries[0].write_bytes(entries[1].read_bytes())  # one entry's file in another's place
    result = run(tmp_path, "render")
    assert result.exit_code == 1 and "missing or damaged" in result.output and "nothing was written" in result.output
    assert not (tmp_path / "site").exists()


def test_pipes_devices_and_dangling_links_in_a_probe_folder_are_counted_as_skipped(tmp_path):
    write_images(tmp_path / "imgs", 3)
    os.mkfifo(tmp_path / "imgs" / "pipe.png")
    (tmp_path / "imgs" / "zero.png").symlink_to("/dev/zero")
    (tmp_path / "imgs" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "atlas.toml").write_text(CONFIG)
    result = run(tmp_path, "compute")
    assert result.exit_code == 0, result.output
    assert "skipped 3 image files:" in result.output
    for reason, name in (("not a plain file (a named pipe)", "pipe.png"), ("not a plain file (a device)", "zero.png"),
                         ("a link to nothing", "gone.png")):
        assert f"1 {reason}: imgs/{name}" in result.output


def test_a_truncated_manifest_is_named_damaged_not_missing(tmp_path):
    write_images(tmp_path / "imgs", 3)
    (tmp_path / "atlas.toml").write_text(CONFIG)
    assert run(tmp_path, "compute").exit_code == 0
    manifest = next((tmp_path / "cache" / "manifests").glob("*.json"))
    manifest.write_text(manifest.read_text()[:1000])
    result = run(tmp_path, "render")
    assert result.exit_code == 1 and "is damaged" in result.output and "nothing computed" not in result.output
    assert "sitegen compute" in result.output


# 7. labels on a small labelled probe set

def test_a_small_labelled_set_names_its_detector_without_label_top(tmp_path):
    stripes(tmp_path / "probe" / "diagonal", 12, 0)
    write_images(tmp_path / "probe" / "blobs", 12, size=(48, 48), seed=1)
    write_images(tmp_path / "probe" / "noise", 12, size=(48, 48), seed=2)
    stripes(tmp_path / "featured", 1, 5)
    config = """[model]
name = "diagnet:build"
weights = "none"
resize = 48
crop = 48
[layers]
use = ["relu"]
[images]
featured = ["featured/s0.png"]
probe = ["probe"]
labels = "folders"
[compute]
top_k = 6
methods = ["guided"]
"""
    (tmp_path / "atlas.toml").write_text(config)
    result = run(tmp_path, "build")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "site" / "manifest.json").read_text())
    detector = data["layers"][0]["neurons"][0]
    assert {p["label"] for p in detector["top_patches"]} == {"diagonal"}
    assert detector["label"] == "diagonal" and detector["label_automatic"]
    assert "its top 9 probe images" in (tmp_path / "site" / "layers" / "relu" / "0.html").read_text()
    (tmp_path / "atlas.toml").write_text(config.replace('labels = "folders"', 'labels = "folders"\nlabel_top = 18'))
    result = run(tmp_path, "compute")
    assert result.exit_code == 0 and "images.label_top = 18 counts half the probe set's 36 files" in result.output


def test_a_buffer_that_holds_minus_infinity_on_purpose_is_no_broken_weight(tmp_path):
    write_images(tmp_path / "imgs", 3)
    (tmp_path / "atlas.toml").write_text(CONFIG.replace("tinynet:build", "nannet:masked"))
    result = run(tmp_path, "compute")
    assert result.exit_code == 0, result.output


def test_reordering_a_layer_s_methods_keeps_the_photos_of_its_zooms(tmp_path):
    """The photo cut to each zoom's box is kept with the first method's pictures: a new first method plans
    it again, so the render finds it."""
    write_images(tmp_path / "imgs", 3)
    config = CONFIG.replace('methods = ["guided"]', 'methods = ["guided", "gradient"]')
    (tmp_path / "atlas.toml").write_text(config)
    assert run(tmp_path, "build").exit_code == 0
    (tmp_path / "atlas.toml").write_text(config.replace('"guided", "gradient"', '"gradient", "guided"'))
    result = run(tmp_path, "build")
    assert result.exit_code == 0, result.output
    assert not check_site(tmp_path / "site")[1]
