"""How the atlas was computed, in words: the about page and manifest.json say it (DESIGN §2)."""

from __future__ import annotations

from ..images import GRADIENT_STEP
from ..methods import METHODS

TERMS = {
    "activation": ("A channel's activation on an image is its maximum over positions, and its position is "
                   "where that maximum is (the first one in reading order). A unit of a flat layer has one "
                   "value."),
    "picture": ("Each picture shows g / max|g| * 0.5 + 0.5, one maximum over the whole picture, so zero is "
                "mid-grey and colours keep their balance. The whole image is shown, grey where the neuron "
                f"cannot see. Pictures are stored with levels {GRADIENT_STEP} apart, counted from mid-grey, so "
                f"no value is more than {GRADIENT_STEP // 2} of 255 from the exact picture; this keeps faint "
                "detail that a lossy format would smooth away."),
    "other": ("Only ReLU and ReLU6 change their backward pass; every other function (pooling, batch norm, "
              "sigmoid, swish) keeps its true gradient."),
    "patch": ("A patch is the neuron's receptive field at its position: the box of input pixels that can "
              "affect it, from the layers' kernels, strides and padding, grey where it leaves the image. "
              "Where the box is larger than the image, the whole image is shown. The guided patch is the "
              "same box cut from the guided-backprop picture. Patches larger than 128 pixels are shown "
              "shrunk to 128."),
    "top": ("Top patches: the probe views with the highest activation, one patch per view, ties broken by "
            "the order of the probe set."),
}

# every term and every method, by name
DEFINITIONS = {**TERMS, **{method.name: method.definition for method in METHODS}}
