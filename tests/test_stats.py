"""Invariants every per-neuron statistic (sitegen/stats) must keep, tested from the registry: a statistic
added there is checked here without a new test."""

import json
from pathlib import Path

import jinja2
import numpy as np
import pytest

from sitegen.render import environment, templates_dir
from sitegen.stats import STATISTICS

rng = np.random.default_rng(0)
# 100 probe items of 6 neurons: one never positive, one constant, the others spread
VALUES = np.concatenate([rng.normal(0, 1, (100, 4)), -np.abs(rng.normal(0, 1, (100, 1))), np.ones((100, 1))],
                        axis=1).astype(np.float32)


def chunked(size):
    return lambda: (VALUES[start:start + size] for start in range(0, len(VALUES), size))


@pytest.mark.parametrize("statistic", STATISTICS, ids=lambda s: s.NAME)
def test_chunking_changes_nothing(statistic):
    whole = statistic.compute(chunked(len(VALUES)), len(VALUES))
    for size in (1, 7, 64):
        parts = statistic.compute(chunked(size), len(VALUES))
        assert set(parts) == set(whole)
        for name in whole:
            assert parts[name].shape[0] == VALUES.shape[1]
            assert np.allclose(parts[name], whole[name], rtol=1e-12, atol=0), name


@pytest.mark.parametrize("statistic", STATISTICS, ids=lambda s: s.NAME)
def test_records_are_json_and_the_template_part_renders(statistic):
    arrays = statistic.compute(chunked(10), len(VALUES))
    assert json.dumps(statistic.PARAMETERS)
    env = environment(templates_dir())
    part = Path(templates_dir()) / "stats" / f"{statistic.NAME}.html"
    assert part.is_file(), f"no template part {part}"
    for row in range(VALUES.shape[1]):
        record = json.loads(json.dumps(statistic.record(arrays, row), allow_nan=False))
        html = env.get_template(f"stats/{statistic.NAME}.html").render(
            stat={"name": statistic.NAME, "context": statistic.context(record)}, probe={"count": len(VALUES)},
            layer={"signed": row % 2 == 0, "kind": "channels", "logits": row % 3 == 0}, page_path="layers/a/0.html")
        assert html.strip() and "None" not in html


def test_the_histogram():
    histogram = next(s for s in STATISTICS if s.NAME == "histogram")
    record = histogram.record(histogram.compute(chunked(9), len(VALUES)), 0)
    assert sum(record["counts"]) == 100
    assert record["low"] == pytest.approx(VALUES[:, 0].min()) and record["high"] == pytest.approx(VALUES[:, 0].max())
    assert record["firing"] == pytest.approx((VALUES[:, 0] > 0).mean())
    with pytest.raises(jinja2.UndefinedError):  # a part reads only what its context gives
        environment(templates_dir()).get_template("stats/histogram.html").render(
            stat={"name": "histogram", "context": {}}, probe={"count": 100},
            layer={"signed": False, "kind": "units", "logits": False},
            page_path="x.html")
