"""Two CPU ranks with gloo under torchrun give exactly what one process gives."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from conftest import TINY_MODEL, write_images
from typer.testing import CliRunner

from sitegen.cli import app
from sitegen.store.cache import manifest_name

CONFIG = TINY_MODEL + """[layers]
use = ["features.1", "features.4", "fc"]
[images]
featured = ["imgs/img0.png", "imgs/img3.png"]
probe = ["imgs"]
probe_flip = true
probe_zooms = [1.0, 0.5]
[compute]
top_k = 5
batch_size = 4
"""


def entries(cache: Path) -> dict[str, dict[str, bytes]]:
    """Every cache entry's members, by entry file name."""
    out = {}
    for path in sorted(cache.rglob("*.zip")):
        with zipfile.ZipFile(path) as archive:
            out[path.name] = {name: archive.read(name) for name in sorted(archive.namelist())}
    return out


def test_two_gloo_ranks_equal_one_process(tmp_path, monkeypatch):
    from sitegen.config import load
    from sitegen.pipeline.runner import compute
    from sitegen.pipeline.stages import activations
    from sitegen.store.manifest import dump

    write_images(tmp_path / "imgs", 6)
    (tmp_path / "atlas.toml").write_text(CONFIG)
    monkeypatch.setattr(activations, "CHUNK", 16)  # several probe chunks, so each rank has its own
    # one thread, as each rank has: on some CPUs a convolution's last bits depend on the number of threads
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single, _ = compute(load(tmp_path / "atlas.toml"), tmp_path / "one", device="cpu", quiet=True)
        torch.set_num_threads(2)  # two threads: float sums in another order, the last bits of float32 differ
        compute(load(tmp_path / "atlas.toml"), tmp_path / "threads", device="cpu", quiet=True)
    finally:
        torch.set_num_threads(threads)

    # CPU ranks even where a GPU exists: this is the gloo path
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
               SITEGEN_TEST_CHUNK="16", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               str(Path(__file__).parent / "run_compute.py"), str(tmp_path / "atlas.toml"), str(tmp_path / "two")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    shared = json.loads((tmp_path / "two" / manifest_name(tmp_path / "atlas.toml", tmp_path / "two")).read_text())
    assert shared == json.loads(json.dumps(dump(single)))
    assert entries(tmp_path / "one") == entries(tmp_path / "two")
    sites = {}
    for cache in ("one", "two", "threads"):  # the sites rendered from them are the same, byte for byte, and so is
        # that of one process of two threads: the site's numbers are rounded to SIGNIFICANT digits
        result = CliRunner().invoke(app, ["render", "-c", str(tmp_path / "atlas.toml"), "--cache",
                                          str(tmp_path / cache), "--out", str(tmp_path / f"site-{cache}")])
        assert result.exit_code == 0, result.output
        site = tmp_path / f"site-{cache}"
        sites[cache] = {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}
    assert len(sites["one"]) > 50 and sites["one"] == sites["two"] == sites["threads"]


def test_the_site_s_json_numbers_are_rounded_and_never_nan():
    from sitegen.site.model import SIGNIFICANT, json_file, portable

    assert SIGNIFICANT == 4
    # two builds whose sums ran in another order differ in the last bits of float32: the site writes the same
    assert portable([0.17488659918308258, 0.30984270572662354]) == portable([0.17488661408424377, 0.3098427653312683])
    assert portable({"a": [1.23456e-9, 7, "x", None]}) == {"a": [1.235e-09, 7, "x", None]}
    data = json.loads(json_file("m.json", {"v": [1.0, float("nan"), float("inf")]}).data)
    assert data["v"] == [1.0, None, None] and "2 numbers that are not finite" in data["notes"][0]
