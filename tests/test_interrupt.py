"""A build killed with SIGKILL in the middle of compute resumes and gives the same site."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import write_images

CONFIG = """
[model]
name = "resnet18"
weights = "none"
resize = 48
crop = 48
[layers]
use = ["layer1", "layer2"]
[images]
featured = ["imgs/img0.png", "imgs/img1.png"]
probe = ["imgs"]
probe_flip = true
probe_zooms = [1.0, 0.6]
[compute]
top_k = 4
batch_size = 2
"""


def build(root: Path, cache: str, site: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    return subprocess.Popen([sys.executable, "-m", "sitegen", "build", "-c", str(root / "atlas.toml"),
                             "--cache", str(root / cache), "-o", str(root / site), "-q"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def files(site: Path) -> dict[str, bytes]:
    return {str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}


def test_killed_build_resumes_to_the_same_site(tmp_path):
    write_images(tmp_path / "imgs", 4)
    (tmp_path / "atlas.toml").write_text(CONFIG)

    process = build(tmp_path, "cache", "site")
    deadline = time.monotonic() + 120
    while not (tmp_path / "cache" / "patch").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert process.poll() is None, "the build ended before it could be interrupted"
    os.kill(process.pid, signal.SIGKILL)  # in the middle of the top patches
    process.wait()
    assert not (tmp_path / "site" / "index.html").exists()

    resumed = build(tmp_path, "cache", "site")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "computed" in output and "activations" not in output.split("computed")[1].split("\n")[0]

    clean = build(tmp_path, "cache-clean", "site-clean")
    output, _ = clean.communicate(timeout=300)
    assert clean.returncode == 0, output
    assert files(tmp_path / "site") == files(tmp_path / "site-clean")


def test_a_damaged_entry_is_reported_and_recomputed(tmp_path):
    write_images(tmp_path / "imgs", 4)
    (tmp_path / "atlas.toml").write_text(CONFIG.replace('"layer1", "layer2"', '"layer1"'))
    first = build(tmp_path, "cache", "site")
    assert first.wait(timeout=300) == 0
    before = files(tmp_path / "site")
    victim = sorted((tmp_path / "cache" / "vis").rglob("*.zip"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # truncated, as by a failing disk
    again = build(tmp_path, "cache", "site")
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert f"warning: cache entry vis/{victim.stem} is damaged: removed, and computed again" in output
    assert "visualizations" in output
    assert files(tmp_path / "site") == before
