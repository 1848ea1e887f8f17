"""Top patches: the streaming top k equals a full sort, shards merge exactly, chunking changes nothing."""

import numpy as np
import pytest

from sitegen.engine.topk import RunningTopK


def full_top(values: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-values, axis=0, kind="stable")[:k].T  # ties: the earlier row first


def test_running_top_k_equals_a_full_sort_with_ties():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, (200, 7)).astype(np.float32)  # many ties
    positions = rng.integers(0, 100, (200, 7))
    running = RunningTopK(7, 9)
    for start in range(0, 200, 13):
        running.update(values[start:start + 13], positions[start:start + 13], np.arange(start, min(start + 13, 200)))
    expected = full_top(values, 9)
    assert (running.rows.T == expected).all()
    assert (running.values.T == np.take_along_axis(values.T, expected, axis=1)).all()
    assert (running.positions.T == np.take_along_axis(positions.T, expected, axis=1)).all()


def test_shards_merge_exactly_in_any_order():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 4, (120, 5)).astype(np.float32)
    positions = rng.integers(0, 50, (120, 5))
    shards = []
    for rank in range(3):  # rank r holds rows r, r + 3, ...
        rows = np.arange(rank, 120, 3)
        shard = RunningTopK(5, 6)
        shard.update(values[rows], positions[rows], rows)
        shards.append(shard)
    merged = RunningTopK(5, 6)
    for shard in reversed(shards):
        merged.merge(shard)
    assert (merged.rows.T == full_top(values, 6)).all()


def test_chunked_probe_activations_change_nothing(tmp_path, monkeypatch):
    from conftest import TINY_MODEL, write_images

    from sitegen.config import load
    from sitegen.pipeline.runner import compute
    from sitegen.pipeline.stages import activations

    write_images(tmp_path / "imgs", 4)
    (tmp_path / "atlas.toml").write_text(TINY_MODEL + """[layers]
use = ["features.4", "fc"]
[images]
featured = ["imgs/img0.png"]
probe = ["imgs"]
probe_flip = true
probe_zooms = [1.0, 0.5]
[compute]
top_k = 5
""")
    config = load(tmp_path / "atlas.toml")
    whole, _ = compute(config, tmp_path / "a", quiet=True)
    monkeypatch.setattr(activations, "CHUNK", 7)
    chunked, _ = compute(config, tmp_path / "b", quiet=True)
    # the same choices everywhere; values equal up to float32 rounding (a batch's size can change a
    # convolution's last bit, and chunks of 7 make batches of 7)
    for one, other in zip(whole.layers, chunked.layers):
        for a, b in zip(one.neurons, other.neurons):
            assert [p.item for p in a.top] == [p.item for p in b.top]
            assert [p.item for p in a.levels] == [p.item for p in b.levels]
            assert [p.value for p in a.top] == pytest.approx([p.value for p in b.top], rel=1e-5)
            assert a.stats["histogram"]["counts"] == b.stats["histogram"]["counts"]
            assert a.stats["histogram"]["mean"] == pytest.approx(b.stats["histogram"]["mean"], rel=1e-5)
            assert a.children.keys() == b.children.keys()
    for layer in whole.layers:
        for record in layer.neurons:
            stats = record.stats["histogram"]
            assert sum(stats["counts"]) == whole.probe.count == 36  # 3 files, the featured one left out
            assert stats["low"] <= stats["mean"] <= stats["high"] and 0 <= stats["firing"] <= 1
            assert stats["high"] == pytest.approx(record.top[0].value)  # the best patch is the maximum
