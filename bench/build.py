"""`sitegen build` of the default atlas, cold (empty cache and site) and warm (nothing changed), in one run.

Run: .venv/bin/python bench/build.py   (takes as long as a cold build: minutes on a CPU)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(cache: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sitegen", "build", "--config", str(ROOT / "content" / "atlas.toml"),
                    "--cache", str(cache), "--out", str(out), "--quiet"], check=True)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        cache, out = Path(temp) / "cache", Path(temp) / "site"
        cold = build(cache, out)
        warm = build(cache, out)
    print(f"sitegen build, default atlas: cold {cold:.1f} s, warm {warm:.1f} s, warm/cold {warm / cold:.3f}")


if __name__ == "__main__":
    main()
