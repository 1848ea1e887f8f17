"""Where a neuron looks: its layer's effective receptive field, and the box its patches are cut to."""

from types import SimpleNamespace

from sitegen.engine.geometry import Geometry
from sitegen.model.layers import Layer
from sitegen.pipeline.stage import State
from sitegen.pipeline.stages.effective import box, patch_box

WS = SimpleNamespace(model=SimpleNamespace(preprocess=SimpleNamespace(crop=64)))
# 8 x 8 positions, 8 px apart; position (i, j) is centred on pixel (8i + 3, 8j + 3)
LAYER = Layer("b", "b", "b", (4, 8, 8), Geometry((8, 8), (-2, -2), (8, 8)))


def test_the_box_is_centred_on_the_position_and_moved_into_the_image():
    state = State(effective={"b": 11})
    assert box(WS, state, LAYER, 3 * 8 + 4) == (22, 30, 32, 40)  # centred on (27, 35)
    assert box(WS, state, LAYER, 0) == (0, 0, 10, 10)  # centred on (3, 3): moved in, not grey padding
    assert box(WS, state, LAYER, 63) == (53, 53, 63, 63)  # the far corner
    for position in range(64):
        top, left, bottom, right = box(WS, state, LAYER, position)
        assert bottom - top == right - left == 10 and top >= 0 and left >= 0 and bottom < 64 and right < 64


def test_without_an_effective_field_a_patch_is_the_whole_image():
    state = State(effective={"b": None})
    assert box(WS, state, LAYER, 5) is None
    assert patch_box(WS, state, LAYER, 5) == (0, 0, 63, 63)
