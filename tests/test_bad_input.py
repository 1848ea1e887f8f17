"""Image folders as users have them: broken files are skipped with one summary, odd ones are used."""

import numpy as np
from conftest import TINY_MODEL, write_images
from PIL import Image
from typer.testing import CliRunner

from sitegen.check import check_site
from sitegen.cli import app

CONFIG = TINY_MODEL + """[layers]
use = ["features.4", "fc"]
[images]
featured = ["imgs/grey.png"]
probe = ["imgs"]
[compute]
top_k = 3
"""


def make_folder(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb[..., 0]).save(folder / "grey.png")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(folder / "rgba.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65535, (30, 30))).astype(np.uint16)).save(folder / "sixteen.png")
    Image.fromarray(rgb[:3, :5]).save(folder / "tiny.png")
    Image.fromarray(rgb[::-1]).save(folder / "katze äöü mit leer.png")
    Image.fromarray(rgb[:, ::-1]).save(folder / "<b>bold<i> & ..dots...png")
    Image.fromarray(rgb).save(folder / "duplicate.png")
    Image.fromarray(rgb).save(folder / "duplicate-again.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image")
    good = folder / "katze äöü mit leer.png"
    (folder / "truncated.png").write_bytes(good.read_bytes()[:200])
    Image.new("1", (12000, 12000)).save(folder / "bomb.png")  # 144 million pixels in a few kB
    return {"empty.png", "notes.jpg", "truncated.png", "bomb.png"}


def test_bad_files_are_skipped_and_odd_ones_used(tmp_path):
    bad = make_folder(tmp_path / "imgs")
    (tmp_path / "atlas.toml").write_text(CONFIG)
    result = CliRunner().invoke(app, ["build", "-c", str(tmp_path / "atlas.toml"), "-o", str(tmp_path / "site"),
                                      "--cache", str(tmp_path / "cache"), "-q"])
    assert result.exit_code == 0, result.output
    summary = result.output[result.output.index("skipped 4 image files:"):]
    for name in bad:
        assert f"imgs/{name}" in summary
    assert "empty file" in summary and "not an image" in summary and "too large" in summary
    assert check_site(tmp_path / "site")[1] == []
    about = (tmp_path / "site" / "about.html").read_text()
    # the odd but readable files are all probe images (one of the two duplicates), the broken ones are not
    assert "katze äöü mit leer.png" in about and "sixteen.png" in about and "cmyk.jpg" in about
    assert "notes.jpg" not in about and ("duplicate.png" in about) != ("duplicate-again.png" in about)
    # a file name is text, never markup, on every page that shows it
    assert "&lt;b&gt;bold&lt;i&gt; &amp; ..dots...png" in about
    for page in (tmp_path / "site").rglob("*.html"):
        assert "<b>bold" not in page.read_text()


def test_no_readable_probe_image_is_a_clear_error(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (tmp_path / "atlas.toml").write_text(CONFIG.replace('featured = ["imgs/grey.png"]', ""))
    result = CliRunner().invoke(app, ["compute", "-c", str(tmp_path / "atlas.toml"), "--cache",
                                      str(tmp_path / "cache"), "-q"])
    assert result.exit_code == 1
    assert "no readable probe images" in result.output and "imgs/empty.png: empty file" in result.output


def test_the_skip_summary_counts_every_file_left_out(tmp_path):
    """Files with the same bytes are one image, but each one left out is counted and the first named."""
    bad = make_folder(tmp_path / "imgs")
    for n in range(200):
        (tmp_path / "imgs" / f"blank-{n:03d}.png").write_bytes(b"")
    (tmp_path / "atlas.toml").write_text(CONFIG)
    result = CliRunner().invoke(app, ["compute", "-c", str(tmp_path / "atlas.toml"),
                                      "--cache", str(tmp_path / "cache"), "-q"])
    assert result.exit_code == 0, result.output
    assert f"skipped {len(bad) + 200} image files:" in result.output
    assert "  - 201 empty file: imgs/blank-000.png, imgs/blank-001.png, imgs/blank-002.png and 198 more" \
        in result.output


def test_a_symlink_loop_under_a_recursive_glob_is_walked_once(tmp_path, monkeypatch):
    from sitegen import images

    write_images(tmp_path / "imgs" / "probe", 3)
    (tmp_path / "imgs" / "probe" / "loop").symlink_to(".")
    (tmp_path / "imgs" / "up").symlink_to(tmp_path / "imgs")
    (tmp_path / "elsewhere").mkdir()
    write_images(tmp_path / "elsewhere", 1, seed=1)
    (tmp_path / "imgs" / "linked").symlink_to(tmp_path / "elsewhere")  # a linked folder is followed, once
    found = images.expand(("imgs/**/*", "imgs/probe/**/*.png", "imgs"), tmp_path, "images.probe")
    names = sorted(p.relative_to(tmp_path).as_posix() for p in found)
    assert names == ["imgs/linked/img0.png", "imgs/probe/img0.png", "imgs/probe/img1.png", "imgs/probe/img2.png"]
    notes: list[str] = []
    monkeypatch.setattr(images, "MAX_FILES", 2)
    assert len(images.expand(("imgs/**/*.png",), tmp_path, "images.probe", notes)) == 2
    assert notes == [f"images.probe: 'imgs/**/*.png': more than 2 files under {tmp_path / 'imgs'}; using the first 2"]


def test_the_file_limit_counts_matches_and_hidden_folders_are_not_entered(tmp_path, monkeypatch):
    import pytest

    from sitegen import images
    from sitegen.errors import SitegenError

    for n in range(10):
        (tmp_path / "a" / "deep").mkdir(parents=True, exist_ok=True)
        (tmp_path / "a" / "deep" / f"{n}.txt").write_text("not an image")
    (tmp_path / ".cache" / "x").mkdir(parents=True)
    write_images(tmp_path / ".cache" / "x", 2)
    write_images(tmp_path / "b", 1)
    monkeypatch.setattr(images, "MAX_FILES", 5)
    notes: list[str] = []
    assert images.expand(("*/*.png",), tmp_path, "images.probe", notes) == [tmp_path / "b" / "img0.png"]
    assert images.expand(("**/*.png",), tmp_path, "images.probe", notes) == [tmp_path / "b" / "img0.png"]
    assert notes == []
    with pytest.raises(SitegenError, match=r"images.probe: '\[z-a\].png' is not a valid pattern"):
        images.expand(("[z-a].png",), tmp_path, "images.probe")
