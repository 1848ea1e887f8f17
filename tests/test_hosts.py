"""`sitegen check --host`: a built site against a static host's limits (files, site size, largest file)."""

import os

from typer.testing import CliRunner

from sitegen.check import HOSTS, MIB, Host, advice, against, footprint, where
from sitegen.cli import app


def make_site(root, files, size=10, big=0):
    """A site of ``files`` files (an index, then pages in two folders), each ``size`` bytes, one of ``big``."""
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "index.html").write_text('<a href="a/0.html">first</a>')
    (root / "a" / "0.html").write_bytes(b"y" * (big or size))
    for n in range(1, files - 1):
        (root / ("a" if n % 2 else "b") / f"{n}.html").write_bytes(b"x" * size)
    return root


def test_a_footprint_counts_files_folders_bytes_and_the_largest(tmp_path):
    site = make_site(tmp_path / "site", 7, size=100, big=5000)
    os.symlink(site / "a" / "0.html", site / "link.html")  # a link is uploaded as what it is, not followed
    used = footprint(site)
    assert (used.files, used.directories) == (8, 2)
    assert used.largest == (5000, "a/0.html")
    assert used.size == len('<a href="a/0.html">first</a>') + 5 * 100 + 5000 + len(str(site / "a" / "0.html"))


def test_each_limit_is_one_line_and_over_is_named(tmp_path):
    used = footprint(make_site(tmp_path / "site", 30, big=3 * MIB))
    host = Host("Tiny host", files=29, size=10**9, largest=2 * MIB, directories_count=True)
    lines = against(used, host)
    assert [ok for ok, _ in lines] == [False, True, False]
    assert lines[0][1] == "OVER  files and folders: 32 of at most 29"
    assert lines[2][1].startswith("OVER  largest file: 3.0 MiB (a") and lines[2][1].endswith("of at most 2.0 MiB")
    assert against(used, HOSTS["cloudflare"])[1] == (True, "ok    site size: 3.1 MB (no limit)")


def test_check_host_fails_over_a_limit_and_passes_within(tmp_path, monkeypatch):
    site = make_site(tmp_path / "site", 12)
    runner = CliRunner()
    within = runner.invoke(app, ["check", str(site), "--host", "cloudflare"])
    assert within.exit_code == 0, within.output
    assert "ok    files: 12 of at most 20,000" in within.output
    monkeypatch.setitem(HOSTS, "cloudflare", Host("Cloudflare Pages, free plan", 10, None, 25 * MIB))
    over = runner.invoke(app, ["check", str(site), "--host", "cloudflare"])
    assert over.exit_code == 1
    assert "OVER  files: 12 of at most 10" in over.output and "over 1 of Cloudflare" in over.output
    unknown = runner.invoke(app, ["check", str(site), "--host", "geocities"])
    assert unknown.exit_code == 1 and "expected one of github, gitlab, cloudflare, cloudflare-paid" in unknown.output


def test_the_check_says_where_a_sites_bytes_are_and_what_brings_it_within_a_limit(tmp_path, monkeypatch):
    site = make_site(tmp_path / "site", 4, size=100)
    files = {"assets/layers/conv/3.avif": 4000, "assets/layers/conv/3~lossless.webp": 3000,
             "before/assets/layers/conv/12~2.avif": 1000, "assets/layers/conv/tiles.avif": 500,
             "assets/layers/conv/on-cat.avif": 400, "assets/trees/cat.avif": 300, "manifest.json": 200,
             "search-index.js": 50}
    for path, size in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_bytes(b"z" * size)
    used = footprint(site)
    pages = len('<a href="a/0.html">first</a>') + 3 * 100
    assert used.parts == {"neurons' own pictures": 8000, "layers' pictures": 900, "pages": pages, "trees": 300,
                          "manifest.json": 200, "other files": 50}
    assert where(used) == (f"its bytes: neurons' own pictures 0.0 MB (82%), layers' pictures 0.0 MB (9%), pages "
                           f"0.0 MB ({pages / used.size:.0%}), trees 0.0 MB (3%), manifest.json 0.0 MB (2%), other "
                           f"files 0.0 MB (1%)")
    host = Host("Tiny host", files=5, size=5000, largest=2500)
    assert [ok for ok, _ in against(used, host)] == [False, False, False]
    said = advice(used, host)
    assert said[0].startswith("to have fewer files: each mapped neuron is a page") and "[layers] neurons" in said[0]
    assert said[1].startswith("to make it smaller: lower [site] quality") and "[compute] top_k" in said[1]
    assert "[compute] methods" in said[1] and "[trees] layers" in said[1]
    assert said[2].startswith("to make assets/layers/conv/3.avif smaller: sitegen's sheets of pictures are at most")
    assert advice(used, Host("Folders count", files=5, size=None, largest=None, directories_count=True)) == [
        said[0].replace("fewer files", "fewer files and folders")]
    (site / "manifest.json").write_bytes(b"z" * 9000)
    used = footprint(site)
    assert advice(used, host)[2] == ("to make manifest.json smaller: it holds a record of every mapped neuron; map "
                                     "fewer neurons ([layers] neurons), or publish some layers as an atlas of their "
                                     "own")
    assert advice(used, HOSTS["cloudflare"]) == []
    monkeypatch.setitem(HOSTS, "cloudflare", Host("Cloudflare Pages, free plan", 10, None, 25 * MIB))
    over = CliRunner().invoke(app, ["check", str(site), "--host", "cloudflare"])
    assert over.exit_code == 1 and "  its bytes: manifest.json 0.0 MB" in over.output
    assert "  to have fewer files: each mapped neuron" in over.output and "to make it smaller" not in over.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert where(footprint(empty)) == "its bytes: none"
