"""The one table of methods: what config validation accepts, what the engine runs, what the site says.

A *ReLU-rule method* makes a gradient picture: the gradient of a neuron's
activation with respect to the input, with every ReLU's backward pass
replaced by the method's rule (the rule itself, a tensor function, is in
``engine/rules.py`` under the method's name).  ``optimize`` is a product of
its own: an image made from noise.  No torch here, so the config and the site
read this table without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str  # as written in compute.methods and in file names
    title: str  # as pages name it
    definition: str  # one paragraph for the about page and manifest.json
    shows: str = ""  # a sentence for the neuron page: what its pictures show ...
    misleads: str = ""  # ... and one on when they are known to mislead
    relu_rule: bool = True  # a gradient picture under a ReLU rule of the same name (engine/rules.py)

    @property
    def phrase(self) -> str:
        """The title within a sentence: in lower case, but for a name ("SmoothGrad")."""
        return self.title if self.title[1:] != self.title[1:].lower() else self.title.lower()


METHODS = (
    Method("guided", "Guided backprop",
           "Guided backpropagation (Springenberg et al., 2015): the gradient of the neuron's activation at its "
           "position with respect to the input pixels, where every ReLU passes back only positive gradients "
           "and only where its input was positive.",
           "Shows what in the image raises the neuron, in the colours that raise it.",
           "Misleads deep in the network: it shows the image's own edges more than the neuron, so that different "
           "neurons' pictures look alike (see their specificity); at the class logits it is nearly the same "
           "picture for every class."),
    Method("deconv", "Deconvnet",
           "Deconvnet (Zeiler & Fergus, 2014): as the gradient, but every ReLU passes back the positive part of "
           "the gradient, whatever its input was.",
           "Shows the pattern the neuron passes back to the input, whatever the image holds there.",
           "Misleads: its colours come from the network's first filters more than from the image (a green "
           "cast), and deep in the network the strided convolutions stamp a lattice on it, the same for every "
           "neuron and image."),
    Method("gradient", "Gradient",
           "The plain gradient (Simonyan et al., 2014): which pixels, if changed, would most change the neuron.",
           "Shows which pixels, if changed, would raise or lower the neuron most.",
           "Noisy: it shows how sensitive the neuron is everywhere, not what the image holds."),
    Method("smoothgrad", "SmoothGrad",
           "SmoothGrad (Smilkov et al., 2017): the mean, over noisy copies of the image (Gaussian noise of a set "
           "share of the image's range, drawn from a seeded generator), of the plain gradient on each copy of "
           "the neuron's activation at its position (the position found on the clean image).",
           "Shows which pixels, if changed, would raise or lower the neuron most, averaged over noisy copies of "
           "the image.",
           "Still speckled where the neuron sees the whole image (deep layers, the classes): a few noisy copies "
           "average away only part of the gradient's noise. What stays is where the neuron is sensitive on "
           "average, not what one image holds.", relu_rule=False),
    Method("optimize", "Optimized image",
           "An optimized image (Olah et al., Feature Visualization, 2017) starts from noise and is changed step by "
           "step to raise the neuron's objective: a channel's mean over positions, a unit's value. The image is "
           "parameterized in decorrelated colour and scaled Fourier space and is jittered, scaled and rotated at "
           "random at every step, so that only patterns that survive small transformations grow; a ReLU closed "
           "for the whole image passes back the gradient that would open it. Each neuron's randomness comes from "
           "the seed and its number.", relu_rule=False),
)

BY_NAME = {method.name: method for method in METHODS}
RULE_METHODS = tuple(method.name for method in METHODS if method.relu_rule)
OPTIMIZE = "optimize"
SMOOTHGRAD = "smoothgrad"
# The methods that make a gradient picture of a neuron: the ReLU rules and SmoothGrad (not the paths' pictures,
# which are the ReLU rules' alone).
PICTURE_METHODS = (*RULE_METHODS, SMOOTHGRAD)
# The true gradient: edge weights are computed with it, whichever pictures are shown.
TRUE_GRADIENT = "gradient"
# Guided backprop, the study's: top patches (by default) and the specificity are its pictures, and thumbnails
# are where it is computed.
GUIDED = "guided"
# What a layer's top patches show beside each photo: a method's picture (guided backprop's by default), or where
# the neuron fires on the photo (its activation map), for a layer whose guided-backprop pictures fail the
# randomization check.
MAP = "map"
PATCH_KINDS = (*PICTURE_METHODS, MAP)
