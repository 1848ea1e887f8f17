"""Top patches: the streaming top k equals a full sort, shards merge exactly, chunking changes nothing."""

import numpy as np
import pytest

from sitegen.engine.topk import RunningTopK
from sitegen.errors import SitegenError


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


def capped_top(values: np.ndarray, groups: np.ndarray, k: int, cap: int) -> list[list[int]]:
    """Each column's best rows (ties: the earlier first), one at a time, skipping a row whose group has ``cap``."""
    out = []
    for column in values.T:
        taken: list[int] = []
        for row in sorted(range(len(column)), key=lambda r: (-column[r], r)):
            if len(taken) < k and sum(groups[t] == groups[row] for t in taken) < cap:
                taken.append(row)
        out.append(taken)
    return out


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_a_capped_top_k_keeps_at_most_cap_rows_of_a_group_streamed_and_merged(cap):
    rng = np.random.default_rng(cap)
    values = rng.integers(0, 6, (150, 6)).astype(np.float32)  # ties
    values[rng.random((150, 6)) < 0.05] = np.nan  # a view whose activation is not finite sorts last
    positions = rng.integers(0, 40, (150, 6))
    groups = np.repeat(np.arange(15), 10)  # 15 photos of 10 views each, as a probe set lists them
    sortable = np.where(np.isnan(values), -np.inf, values)
    expected = np.array(capped_top(sortable, groups, 8, cap))
    running = RunningTopK(6, 8, groups, cap)
    for start in range(0, 150, 11):  # chunks that split a photo's views
        running.update(values[start:start + 11], positions[start:start + 11], np.arange(start, min(start + 11, 150)))
    merged = RunningTopK(6, 8, groups, cap)
    for rank in (2, 0, 1):  # shards of every third row, as rows per column, merged in any order
        rows = np.arange(rank, 150, 3)
        shard = RunningTopK(6, 8, groups, cap)
        shard.update(values[rows], positions[rows], np.broadcast_to(rows[:, None], (len(rows), 6)))
        merged.merge(shard)
    for got in (running, merged):
        assert got.rows.T.tolist() == expected.tolist()
        assert np.array_equal(got.values.T, np.take_along_axis(values.T, expected, axis=1), equal_nan=True)
        assert (got.positions.T == np.take_along_axis(positions.T, expected, axis=1)).all()


def test_a_capped_top_k_short_of_groups_fills_with_nothing():
    values = np.array([[3.0], [2.0], [1.0], [0.5]], dtype=np.float32)
    running = RunningTopK(1, 3, np.array([0, 0, 1, 1]), 1)  # two photos, one view each: two rows
    running.update(values[:2], np.zeros((2, 1), dtype=np.int64), np.arange(2))
    running.update(values[2:], np.zeros((2, 1), dtype=np.int64), np.arange(2, 4))
    assert running.rows[:, 0].tolist() == [0, 2, -1] and running.values[2, 0] == -np.inf


def test_an_atlas_with_per_photo_shows_the_best_views_of_as_many_photos(tmp_path):
    """[compute] per_photo = 1: each unit's top patches are its best view of each of its best photos, against
    a plain forward pass over every view of every probe photo."""
    import torch
    from conftest import TINY_MODEL, write_images

    from sitegen.config import load
    from sitegen.images import load_rgb, probe_views, view_pixels
    from sitegen.model.registry import IMAGENET_MEAN, IMAGENET_STD, load_model
    from sitegen.pipeline.runner import compute

    paths = write_images(tmp_path / "imgs", 6)  # the first featured, five probe photos
    (tmp_path / "atlas.toml").write_text(TINY_MODEL + '[layers]\nuse = ["fc"]\n[images]\nfeatured = ["imgs/img0.png"]\n'
                                         'probe = ["imgs"]\nprobe_flip = true\nprobe_zooms = [1.0, 0.5]\n'
                                         "[compute]\ntop_k = 4\nper_photo = 1\nsanity = false\n")
    manifest, _ = compute(load(tmp_path / "atlas.toml"), tmp_path / "cache", quiet=True)
    model = load_model("tinynet:build", "none").module
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    views = probe_views(True, (1.0, 0.5))
    values, groups = [], []
    with torch.no_grad():
        for photo, path in enumerate(paths[1:]):  # the featured image is not a probe image
            for view in views:
                pixels = torch.from_numpy(view_pixels(load_rgb(path), view, 40, 32, "bilinear"))
                values.append(model((pixels.permute(2, 0, 1).float()[None] / 255 - mean) / std)[0].numpy())
                groups.append(photo)
    values_array = np.array(values)
    expected = capped_top(values_array, np.array(groups), 4, 1)
    layer = manifest.layers[0]
    assert manifest.per_photo == 1 and len(layer.neurons) == values_array.shape[1]
    for record, rows in zip(layer.neurons, expected):
        names = [manifest.probe.items[patch.item].name for patch in record.top]
        assert len(set(names)) == 4  # four photos, one view each
        assert np.allclose([patch.value for patch in record.top], values_array[rows, record.neuron], atol=1e-4)
    (tmp_path / "atlas.toml").write_text((tmp_path / "atlas.toml").read_text().replace("top_k = 4", "top_k = 6"))
    with pytest.raises(SitegenError, match=r"compute.top_k is 6 but with compute.per_photo = 1 the probe set's 5 "
                                           r"photos give at most 5"):
        compute(load(tmp_path / "atlas.toml"), tmp_path / "cache", quiet=True)
