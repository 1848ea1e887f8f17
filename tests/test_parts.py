"""Parts of a tree node (engine/parts.py), where a part lies (trees.holding) and how a page says where."""

import numpy as np
import torch

from sitegen.engine.geometry import Geometry
from sitegen.engine.parts import partition
from sitegen.pipeline.stages.trees import holding
from sitegen.site.pages.image import where


def spots(rng, places, weights, size=8):
    """Maps of channels whose evidence lies around the given positions, with the given total weights."""
    maps = np.zeros((len(places), size, size))
    for channel, ((i, j), weight) in enumerate(zip(places, weights)):
        maps[channel, i, j] = 0.8
        maps[channel, min(i + 1, size - 1), j] = 0.2
        maps[channel] *= weight
        maps[channel] += rng.normal(0, 1e-3, (size, size))  # a little everywhere, some of it negative
    return maps


def test_parts_group_channels_by_where_they_give():
    rng = np.random.default_rng(0)
    places = [(1, 1), (1, 2), (6, 6), (6, 5), (1, 6), (2, 1)]
    maps = spots(rng, places, [3.0, 1.0, 2.0, 0.5, 0.7, 0.4])
    parts = partition(maps, range(6), 3, blur=1.0)
    assert parts == [(0, 1, 5), (2, 3), (4,)]  # top left, bottom right, top right; the strongest first
    assert partition(maps, range(6), 3, blur=1.0) == parts  # no draw: the same parts every time
    # unblurred, evidence one position away is as far as the other corner: the parts are not places
    assert partition(maps, range(6), 3, blur=0) != parts


def test_every_positive_candidate_is_in_one_part_and_nothing_else():
    rng = np.random.default_rng(1)
    maps = rng.normal(0, 1, (40, 7, 7))
    weights = maps.reshape(40, -1).sum(1)
    candidates = list(range(0, 40, 2))  # the layer's mapped channels
    parts = partition(maps, candidates, 5)
    members = sorted(j for part in parts for j in part)
    assert members == sorted(j for j in candidates if weights[j] > 0)
    assert 1 <= len(parts) <= 5
    sums = [weights[list(part)].sum() for part in parts]
    assert sums == sorted(sums, reverse=True)


def test_few_channels_or_a_flat_layer():
    flat = np.array([0.5, -1.0, 2.0, 0.1, 0.3, 0.0])
    assert partition(flat, range(6), 3) == [(2,), (0,), (3, 4)]  # the strongest alone, then the rest together
    assert partition(flat[:, None, None], range(6), 1) == [(0, 2, 3, 4)]
    assert partition(flat, [1, 5], 3) == []  # nothing gives positive weight
    maps = np.zeros((3, 4, 4))
    maps[0, 0, 0], maps[1, 3, 3] = 1.0, 2.0
    assert partition(maps, range(3), 5) == [(1,), (0,)]  # fewer channels than parts: one each


def test_a_part_lies_where_half_its_evidence_is():
    geometry = Geometry(jump=(32, 32), lo=(-100, -100), hi=(120, 120))  # a 7 x 7 map of a 224-pixel image
    contributions = torch.zeros(7, 7)
    contributions[5, 4] = 1.0
    assert holding(geometry, contributions, 224) == 32  # one position holds it all
    contributions[4, 3] = contributions[4, 4] = contributions[5, 3] = 1.0
    contributions[0, 0] = -3.0  # negative evidence is not where a part lies
    assert holding(geometry, contributions, 224) == 64  # a 2 x 2 square holds all four
    contributions[:] = 0.1
    assert holding(geometry, contributions, 224) == 160  # spread evenly: 25 of 49 positions hold half
    assert holding(geometry, torch.tensor(1.0), 224) == 224  # a flat layer: the whole image
    assert holding(geometry, torch.zeros(7, 7), 224) == 224


def test_where_a_box_lies_in_words():
    assert where((0, 0, 55, 55), 224) == "the top left"
    assert where((84, 84, 139, 139), 224) == "the centre"
    assert where((150, 84, 223, 139), 224) == "the bottom"
    assert where((84, 150, 139, 223), 224) == "the right"
    assert where((0, 0, 223, 200), 224) == "most of the image"
