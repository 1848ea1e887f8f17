"""Faults and races: an interrupted render, concurrent renders and builds, entries in the wrong place, folders
that are not caches, errors that must be one line, an atlas that moves."""

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from conftest import TINY_MODEL, write_images
from typer.testing import CliRunner

from sitegen.cli import app
from sitegen.store.cache import Cache

CONFIG = TINY_MODEL + """[layers]
use = ["features.3", "features.6", "fc"]
[images]
featured = ["imgs/img0.png", "imgs/img1.png"]
probe = ["imgs"]
[compute]
top_k = 3
"""


def atlas(root: Path, images: int = 5) -> Path:
    write_images(root / "imgs", images)
    (root / "atlas.toml").write_text(CONFIG)
    return root / "atlas.toml"


def sitegen(root: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    return subprocess.Popen([sys.executable, "-m", "sitegen", *args, "-c", str(root / "atlas.toml")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root)


def finished(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


def files(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}


def snapshot(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*")}


def computed(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("computed "))
    counts = line.removeprefix("computed ").rsplit(" in ", 1)[0]
    return {} if counts.startswith("nothing") else {kind: int(n) for n, kind in
                                                    (part.split(" ", 1) for part in counts.split(", "))}


def test_a_render_killed_midway_leaves_a_folder_the_next_build_takes_over(tmp_path):
    atlas(tmp_path)
    finished(sitegen(tmp_path, "compute", "--cache", "cache", "-q"))
    reference = files(tmp_path / "site-clean") if finished(sitegen(tmp_path, "render", "--cache", "cache", "-o",
                                                                   "site-clean")) else {}
    assert len(reference) > 60
    for _ in range(3):  # a render is quick: kill it at 25 files, or again if it got too far
        shutil.rmtree(tmp_path / "site", ignore_errors=True)
        process = sitegen(tmp_path, "render", "--cache", "cache", "-o", "site")
        while process.poll() is None and sum(1 for _ in (tmp_path / "site").rglob("*")) < 25:
            time.sleep(0.001)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        if process.returncode == -signal.SIGKILL and not (tmp_path / "site" / "search.html").exists():
            break
    assert process.returncode == -signal.SIGKILL
    assert 0 < len(files(tmp_path / "site")) < len(reference)
    finished(sitegen(tmp_path, "build", "--cache", "cache", "-o", "site", "-q"))
    assert files(tmp_path / "site") == reference
    # killed again, the folder is cleaned, not refused
    process = sitegen(tmp_path, "render", "--cache", "cache", "-o", "site-killed")
    while process.poll() is None and not (tmp_path / "site-killed" / ".sitegen-files").exists():
        time.sleep(0.001)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    output = finished(sitegen(tmp_path, "clean", "-o", "site-killed"))
    assert not (tmp_path / "site-killed").exists(), output


def test_two_renders_into_one_folder_both_succeed(tmp_path):
    atlas(tmp_path)
    finished(sitegen(tmp_path, "compute", "--cache", "cache", "-q"))
    finished(sitegen(tmp_path, "render", "--cache", "cache", "-o", "site-one"))
    for _ in range(3):
        shutil.rmtree(tmp_path / "site", ignore_errors=True)
        both = [sitegen(tmp_path, "render", "--cache", "cache", "-o", "site") for _ in range(2)]
        for process in both:
            finished(process)
        assert files(tmp_path / "site") == files(tmp_path / "site-one")
        assert not [p for p in (tmp_path / "site").rglob("*") if p.name.endswith(".sitegen-tmp")]
    mask = os.umask(0)
    os.umask(mask)
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "site").rglob("*.html")} == {0o666 & ~mask}


def test_two_builds_on_one_cache_compute_each_entry_once(tmp_path):
    atlas(tmp_path, images=8)
    alone = computed(finished(sitegen(tmp_path, "compute", "--cache", "cache-alone")))
    both = [sitegen(tmp_path, "build", "--cache", "cache", "-o", f"site-{n}") for n in range(2)]
    counts = [computed(finished(process)) for process in both]
    assert {kind: counts[0].get(kind, 0) + counts[1].get(kind, 0) for kind in alone} == alone
    assert set(counts[0]) | set(counts[1]) == set(alone)
    assert files(tmp_path / "site-0") == files(tmp_path / "site-1")


def test_entries_in_the_wrong_place_or_of_the_wrong_shape_are_computed_again(tmp_path):
    atlas(tmp_path)
    finished(sitegen(tmp_path, "build", "--cache", "cache", "-o", "site", "-q"))
    reference = files(tmp_path / "site")
    cache = Cache(tmp_path / "cache")
    one, two = sorted((tmp_path / "cache" / "vis").rglob("*.zip"))[:2]
    two.write_bytes(one.read_bytes())  # a bad copy: a valid entry in another's place
    acts = sorted((tmp_path / "cache" / "acts").rglob("*.zip"))
    victim = next(p for p in acts if cache.get("acts", p.stem)["values.npy"].ndim == 1)
    cache.put("acts", victim.stem, {"values.npy": np.zeros(3, np.float32), "positions.npy": np.zeros(3, np.int64)})
    output = finished(sitegen(tmp_path, "build", "--cache", "cache", "-o", "site"))
    assert f"warning: cache entry vis/{two.stem} holds vis/{one.stem}" in output
    assert f"warning: cache entry acts/{victim.stem} has values.npy of shape (3,)" in output
    assert files(tmp_path / "site") == reference
    assert "warning" not in finished(sitegen(tmp_path, "build", "--cache", "cache", "-o", "site"))


def test_a_warm_build_writes_nothing_to_the_cache_and_a_moved_atlas_is_found(tmp_path):
    atlas(tmp_path / "project")
    finished(sitegen(tmp_path / "project", "build", "--cache", ".cache", "-o", "site", "-q"))
    before = snapshot(tmp_path / "project" / ".cache")
    output = finished(sitegen(tmp_path / "project", "build", "--cache", ".cache", "-o", "site"))
    assert "computed nothing (all cached)" in output and snapshot(tmp_path / "project" / ".cache") == before
    (tmp_path / "project").rename(tmp_path / "moved")
    output = finished(sitegen(tmp_path / "moved", "render", "--cache", ".cache", "-o", "site"))
    assert "(0 changed, 0 removed)" in output


def test_clean_deletes_a_cache_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atlas(tmp_path)
    runner = CliRunner()
    project = tmp_path / "project"  # a folder that merely has a manifests/ folder
    for name in ("manifests", "src"):
        (project / name).mkdir(parents=True)
        (project / name / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["clean", "-o", "site", "--cache", str(project), "--cache-too"])
    assert result.exit_code == 1 and "not a sitegen cache" in result.output
    assert (project / "src" / "keep.txt").read_text() == "mine"
    assert runner.invoke(app, ["build", "-c", "atlas.toml", "--cache", "cache", "-o", "site", "-q"]).exit_code == 0
    (tmp_path / "cache" / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["clean", "-o", "site", "--cache", "cache", "--cache-too"])
    assert result.exit_code == 1 and "besides the cache it holds notes.txt" in result.output
    assert (tmp_path / "cache" / "notes.txt").exists() and not (tmp_path / "site").exists()
    (tmp_path / "cache" / "notes.txt").unlink()
    result = runner.invoke(app, ["clean", "-o", "site", "--cache", ".", "--cache-too"])
    assert result.exit_code == 1 and "current folder" in result.output
    result = runner.invoke(app, ["clean", "-o", "site", "--cache", "cache", "--cache-too"])
    assert result.exit_code == 0 and "removed the cache cache:" in result.output
    assert not (tmp_path / "cache").exists() and (tmp_path / "atlas.toml").exists()


def test_config_mistakes_are_reported_together_before_anything_is_written(tmp_path):
    atlas(tmp_path)
    text = CONFIG.replace("top_k = 3", "top_k = 500").replace('weights = "none"', 'weights = "missing.pth"')
    (tmp_path / "atlas.toml").write_text(text.replace('"features.6"', '"features.66"'))
    result = CliRunner().invoke(app, ["build", "-c", str(tmp_path / "atlas.toml"), "--cache",
                                      str(tmp_path / "cache"), "-o", str(tmp_path / "site")])
    assert result.exit_code == 1
    assert "3 problems" in result.output and "top_k is 500" in result.output
    assert "missing.pth" in result.output and "features.66" in result.output
    assert not (tmp_path / "cache").exists() and not (tmp_path / "site").exists()


def test_folder_and_port_errors_are_one_line(tmp_path, monkeypatch):
    atlas(tmp_path)
    runner = CliRunner()
    args = ["-c", str(tmp_path / "atlas.toml"), "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "site")]
    assert runner.invoke(app, ["build", *args, "-q"]).exit_code == 0

    def full(self, rel, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.out / rel))

    monkeypatch.setattr("sitegen.render.Writer.write", full)
    result = runner.invoke(app, ["render", *args])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"error: {tmp_path / 'site'}/") and "No space left on device" in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "-o", str(tmp_path / "site"), "--port", str(port)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.output and "choose another --port" in result.output


def test_a_piece_its_run_leaves_unfinished_runs_once(tmp_path):
    """A stage whose run cannot finish a piece must not make the build loop on it."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    from sitegen.pipeline.runner import shared
    from sitegen.pipeline.stage import Stage, State

    @dataclass(frozen=True)
    class Piece:
        index: int
        size: int = 1

    class Stubborn(Stage):
        name = "stubborn"
        runs: list = []

        def plan(self, ws, state):
            return [Piece(0), Piece(1)]

        def run(self, ws, state, work, advance):
            self.runs.extend(piece.index for piece in work)

    stage = Stubborn()
    ws = SimpleNamespace(cache=Cache(tmp_path / "cache"), log=print)
    shared(ws, stage, State(), stage.plan(ws, State()), lambda n: None)
    assert sorted(stage.runs) == [0, 1]
