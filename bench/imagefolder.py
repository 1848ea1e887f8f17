"""An ImageFolder tree (FOLDER/CLASS/file) of the default photos, classed as bench/classes.csv says: the
probe set of bench/timm.toml, as a user's labelled folder tree would be.

Run: .venv/bin/python bench/imagefolder.py [folder, default bench/photo-classes]
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "photo-classes"
    with open(HERE / "classes.csv", newline="", encoding="utf-8") as rows:
        for number, (file, label) in enumerate(csv.reader(rows)):
            if number == 0:
                continue  # the header
            source = (HERE / file).resolve()
            (out / label).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out / label / source.name)
    print(f"{out}: {sum(1 for p in out.rglob('*') if p.is_file())} photos in "
          f"{sum(1 for p in out.iterdir() if p.is_dir())} class folders")


if __name__ == "__main__":
    main()
