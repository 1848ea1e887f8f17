"""`sitegen check --host`: a built site against a static host's limits (files, site size, largest file)."""

import os

from typer.testing import CliRunner

from sitegen.check import HOSTS, MIB, Host, against, footprint
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
    assert used.largest == (5000, os.path.join("a", "0.html"))
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
