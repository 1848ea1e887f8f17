"""How the atlas was computed, in words: the about page and manifest.json say it (DESIGN §2)."""

from __future__ import annotations

from ..methods import METHODS

TERMS = {
    "activation": ("A channel's activation on an image is its maximum over positions, and its position is "
                   "where that maximum is (the first one in reading order). A unit of a flat layer has one "
                   "value."),
    "picture": ("Each picture is shown on its own scale: clip(g / s, -1, 1) * 0.5 + 0.5, where s is the 99.5th "
                "percentile of |g| over the pixels the picture covers where g is not zero, all colour channels "
                "together. Zero is mid-grey, colours keep their balance, and at most 0.5 % of the values are "
                "clipped. The whole picture, each zoom and each patch has its own s (in its hover text and in "
                "manifest.json), so compare brightness within a picture, not between two. A page shows pictures "
                "larger than 64 px a side as AVIF with colour at full resolution, at the atlas's quality ([site] "
                "quality, 52 by default), smaller ones exactly."),
    "other": ("Only ReLU and ReLU6 change their backward pass; every other function (pooling, batch norm, "
              "sigmoid, swish) keeps its true gradient."),
    "patch": ("A patch is where the neuron looks: its effective receptive field at its position, the square "
              "centred there that holds 90 % of its guided-backprop mass, averaged over the best patches of up "
              "to 32 of its layer's neurons (Luo et al., 2016). In deep layers it is much smaller than the "
              "theoretical receptive field, the box of input pixels that can affect the neuron at all (from the "
              "layers' kernels, strides and padding). Where the square would leave the image it is moved inside, "
              "so that it shows photo rather than padding (the gradient is zero outside the image): the patch of "
              "a neuron near the border is then off-centre, its position nearer that edge. Where it covers more "
              "than three quarters of the image, the whole image is shown. The guided patch is the same box cut from "
              "the guided-backprop picture; in a layer whose guided backprop fails the randomization check, the "
              "patches may show another method's picture or the neuron's activation map on that view instead "
              "([layers] patches). Patches larger than 128 pixels are shown shrunk to 128."),
    "map": ("An activation map shows where on an image a channel fires: its output at every position, "
            "upsampled (bilinear) to the model's input and laid over the faded photo: clear at or below 0, red "
            "at its maximum on that image (a ring marks it: the neuron's position), and in between as strong as "
            "the square of its share of that maximum, so that where it fires strongly stands out."),
    "sanity": ("The randomization check of a method at a layer (Adebayo et al., 2018) asks whether its pictures "
               "show what the layer learned. The weights the layer computes from the configured layer below (its "
               "own block; for the lowest layer, everything up to it) are re-initialised, each module by its own "
               "initialiser with a fixed seed, and for each featured image and up to 16 of the layer's mapped "
               "neurons (spread evenly) the picture is made again, the neuron taken at the trained model's "
               "position. The figure is the median, over those pictures, of the Spearman rank correlation of "
               "|picture| (summed over colours) between the trained and the re-initialised model, over the "
               "pixels its zoom shows, its effective receptive field (the whole image where its patches are); "
               "a picture the re-initialised model makes zero counts 0. Near "
               "1, the picture barely depends on what the layer learned: it shows the image and the layers "
               "below; near 0, it changes entirely when the layer's weights do."),
    "effects": ("What a neuron does to a class: the mean over the probe views of the class's logit less its logit "
                "with the neuron's channel (or unit) set to zero at every position (its exact effect, an "
                "ablation), and the first-order estimate of that, the mean edge weight to the class: activation "
                "times the logit's gradient, summed over positions. A neuron's page lists the classes with its "
                "largest first-order effects among those in the top predictions of some probe view, and the exact "
                "effect on its strongest few where computed. The table gives, per layer, the Spearman rank "
                "correlation of the two over every (neuron, class) pair computed exactly, and how many pairs. Much "
                "of that correlation is neurons that matter more than others; within one neuron the order of its "
                "classes can differ, so the table also gives for how many neurons the class the first-order "
                "figures put first is the one zeroing the neuron costs most. The verdict needs both: the "
                "first-order figures order the classes as zeroing the neuron does where the correlation is at "
                "least 0.90 and the first class is right for 9 neurons in 10, only roughly where it is at least "
                "0.50 and right for 6 in 10, and otherwise they are a poor guide, which only the exact figures "
                "correct."),
    "box": ("A box, in manifest.json, is (top, left, bottom, right) in pixels of the model's input, bottom and "
            "right included; a picture is named as its sheet with a W3C media fragment, #xywh=x,y,width,height "
            "in the sheet's pixels. A position on a map is its row and column, counted from 0 at the top left."),
    "top": ("Top patches: the probe views with the highest activation, one patch per view, ties broken by "
            "the order of the probe set. The featured images are not probe images unless the config says so."),
}

# every term and every method, by name
DEFINITIONS = {**TERMS, **{method.name: method.definition for method in METHODS}}
