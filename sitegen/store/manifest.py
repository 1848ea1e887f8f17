"""The manifest between the two halves: what was computed, as frozen records.

The build assembles a :class:`Manifest` (``pipeline/record.py``); the site reads
its attributes.  This module alone turns it into JSON and back (``dump`` and
``load``), field by field from the records' type annotations, so a record is
declared once.  Keys of cache entries are recorded where the site copies
files from them.  No torch here.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import Cache, manifest_name

FORMAT = 4  # bumped when the records change shape; an older manifest is computed again


@dataclass(frozen=True)
class Prediction:
    category: int  # the class's index
    label: str
    prob: float


@dataclass(frozen=True)
class TreeNode:
    """A node of a featured image's tree: a path from the root to this neuron, or to this part (a group of
    one layer's channels; DESIGN §2)."""

    layer: str
    neuron: int  # its neuron; a part's strongest channel
    key: str  # key of its tree-node entry (its path picture and the photo of the same box)
    box: tuple[int, int, int, int]  # where its path picture lies: top, left, bottom, right (inclusive)
    scale: float  # of its picture as shown (cut to the box)
    relative: float  # its whole path picture's scale over the root's: how much of the root passes through it
    value: float | None  # the neuron's activation on the image (None for a part)
    weight: float | None  # its path weight under its parent's path, a part's its channels' summed (None: root)
    share: float | None  # that weight over the parent's total positive path weight
    children: tuple[TreeNode, ...] = ()  # strongest first
    group: tuple[Edge, ...] = ()  # a part's channels, each with its path weight under the parent's path,
    # strongest first (empty for a neuron)
    coverage: float | None = None  # the children's shares summed (None where no children were looked for)


@dataclass(frozen=True)
class FeaturedRecord:
    """A featured image (one file, its whole view)."""

    slug: str  # its page is images/SLUG.html
    name: str  # the file's path relative to the config
    photo: str  # key of its photo entry
    predictions: tuple[Prediction, ...]
    pictures: Mapping[str, Mapping[str, str]]  # layer name -> method -> key of its pictures entry
    maps: Mapping[str, str]  # layer name -> key of its activation maps entry (layers with positions)
    trees: tuple[TreeNode, ...] = ()  # the top predicted class's first
    # each tree's randomization check of its path pictures (median, nodes it is over), None where not checked
    tree_checks: tuple[tuple[float | None, int] | None, ...] = ()


@dataclass(frozen=True)
class ProbeItem:
    """A probe image file seen through one view."""

    name: str  # the file
    view: str  # the view, in words ("whole image", "zoom 0.6 at the centre, mirrored")
    label: str = ""  # its class, in a labelled probe set


@dataclass(frozen=True)
class ProbeRecord:
    count: int  # items: files times views
    files: int
    hash: str
    items: tuple[ProbeItem, ...]
    label_top: int = 0  # with labels: the top files of each neuron whose classes are counted


@dataclass(frozen=True)
class PatchRecord:
    """One probe item shown for a neuron: a top patch (``rank``) or the one nearest a ``percentile``, at its
    ``place`` among the probe views by activation (1: the highest)."""

    item: int  # index into the probe set's items
    value: float
    box: tuple[int, int, int, int]  # the receptive field: top, left, bottom, right (inclusive)
    key: str  # key of the view's patches entry
    scale: float  # of its picture: |g| shown at full contrast in guided backprop's, a map's maximum
    rank: int | None = None
    percentile: float | None = None
    place: int | None = None


@dataclass(frozen=True)
class Edge:
    neuron: int  # of the other layer
    weight: float
    count: int | None = None  # over the dataset: on how many top-patch images it was among the strongest


@dataclass(frozen=True)
class Seen:
    """A neuron on one featured image."""

    value: float
    position: int  # flat index into its layer's map
    scales: Mapping[str, tuple[float, float | None]]  # method -> scales of its whole picture and its zoom
    specificity: float | None = None


@dataclass(frozen=True)
class Excitation:
    """How much the neuron's optimized image excites it, against the best other image and probe view."""

    own: float
    other: float | None  # None with no other mapped neuron
    probe: float


@dataclass(frozen=True)
class ClassShare:
    """A class over-represented among a neuron's top-N probe images (a labelled probe set)."""

    name: str
    share: float  # of its top-N images
    selectivity: float  # that share over the class's share of the probe set's images
    count: int = 0  # its images among the top-N


@dataclass(frozen=True)
class Effect:
    """What a neuron does to a class over the probe set (``[effects]``)."""

    category: int  # the class's index
    label: str
    first_order: float  # its mean edge weight to the class's logit
    ablation: float | None = None  # the mean logit the class loses with the neuron zeroed (None: not computed)


@dataclass(frozen=True)
class NeuronRecord:
    neuron: int
    top: tuple[PatchRecord, ...]  # best first
    levels: tuple[PatchRecord, ...]  # nearest each configured percentile
    featured: Mapping[str, Seen]  # featured slug -> the neuron there
    children: Mapping[str, tuple[Edge, ...]]  # featured slug, or "dataset" -> strongest first
    stats: Mapping[str, Mapping[str, Any]]  # statistic name -> its record (sitegen/stats)
    excitation: Excitation | None = None  # where its layer has optimized images
    classes: tuple[ClassShare, ...] = ()  # strongest first (a labelled probe set)
    effects: tuple[Effect, ...] = ()  # the classes it raises most, strongest first (a layer of [effects] layers)
    predicted: int | None = None  # a classifier's class: on how many probe views it is the top prediction


@dataclass(frozen=True)
class OptimizedRecord:
    """A layer's optimized images and their check."""

    key: str  # key of its optimized entry
    recipe: Mapping[str, Any]
    seed: int
    beats_probe: float  # share of neurons whose image excites them more than any probe view
    specific: float | None  # share whose image excites them more than any other neuron's image


@dataclass(frozen=True)
class LayerRecord:
    name: str  # alias or dotted path: the name in page URLs
    path: str  # dotted module path
    shape: tuple[int, ...]  # output per image: [C, H, W] or [C]
    selection: str  # which neurons are mapped, in words ("" for all)
    lower: str | None  # the configured layer below: where children are
    methods: tuple[str, ...]  # the methods of its featured pictures
    geometry: Mapping[str, Any]
    rf_size: tuple[int, int] | None  # the theoretical receptive field; None: the whole image
    effective: int | None  # the side of its effective receptive field; None: patches are the whole image
    signed: bool  # whether its outputs can be negative (seen on the featured images, or the probe set)
    neurons: tuple[NeuronRecord, ...]  # the mapped neurons, in order
    optimized: OptimizedRecord | None = None
    nonfinite: int = 0  # mapped neurons with NaN or infinite activations on the featured or top probe images
    # method -> its randomization check (pipeline/stages/sanity.py): near 1, its pictures do not show what the
    # layer learned; None where every checked picture was zero
    sanity: Mapping[str, float | None] = dataclasses.field(default_factory=dict)
    # [effects]: the Spearman correlation of first-order and exact effects over the pairs computed exactly, and
    # how many pairs that is (None and 0 without effects, or with fewer than three pairs); and of the neurons
    # computed exactly for two or more classes, how many lose most from the class the first-order effects put first
    effects_agreement: float | None = None
    effects_pairs: int = 0
    effects_first_same: tuple[int, int] = (0, 0)
    patches: str = "guided"  # what its top patches show beside their photos: a method or "map" (methods.PATCH_KINDS)

    @property
    def zoom(self) -> bool:
        """Whether its neurons look at part of the image: patches and zooms are cut to that part."""
        return self.effective is not None

    @property
    def count(self) -> int:
        """Neurons of the layer, mapped or not."""
        return self.shape[0]

    @property
    def mapped(self) -> tuple[int, ...]:
        return tuple(record.neuron for record in self.neurons)

    @property
    def width(self) -> int:
        """Positions per row of its map (1 for a flat layer)."""
        return self.shape[2] if len(self.shape) == 3 else 1


@dataclass(frozen=True)
class ModelRecord:
    name: str
    weights: str  # in words
    fingerprint: str
    license: str
    preprocess: Mapping[str, Any]
    preprocess_text: str
    categories: tuple[str, ...]  # class names; empty if the model has none
    other_activations: tuple[str, ...] = ()  # its activation modules that are not ReLU-like (GELU, SiLU, ...)


@dataclass(frozen=True)
class NeuronChange:
    """A neuron against its match in the other checkpoint (``stats/compare.py``)."""

    neuron: int
    match: int  # the other model's neuron
    correlation: float  # of their activations over the probe set
    top_overlap: float  # of their top-k probe views (Jaccard)
    edge_overlap: float | None  # of their children over the dataset (None in the lowest layer)
    change: float  # in [0, 1]; 0: unchanged
    status: str = ""  # "died", "born" or ""


@dataclass(frozen=True)
class LayerChanges:
    name: str
    neurons: tuple[NeuronChange, ...]  # the mapped neurons, in order


@dataclass(frozen=True)
class Comparison:
    """The atlas against another checkpoint of its model: that checkpoint's own atlas, and the changes."""

    label: str
    match: str  # "index" or "activations"
    before: Manifest  # the other checkpoint's atlas, of its matched neurons
    layers: tuple[LayerChanges, ...]


@dataclass(frozen=True)
class Manifest:
    version: str  # sitegen's
    title: str
    config: str
    model: ModelRecord
    methods: tuple[str, ...]  # the ReLU-rule methods shown
    top_k: int
    children: int  # strongest children kept
    layers: tuple[LayerRecord, ...]  # lowest first
    featured: tuple[FeaturedRecord, ...]
    probe: ProbeRecord
    format: int = FORMAT
    compare: Comparison | None = None
    per_photo: int | None = None  # at most this many of a neuron's top views of one probe photo ([compute])

    def layer(self, name: str) -> LayerRecord:
        return next(layer for layer in self.layers if layer.name == name)


@functools.cache
def _names(kind: Any) -> tuple[str, ...]:
    return tuple(spec.name for spec in dataclasses.fields(kind))


def classifier_output(shape: tuple[int, ...], categories: tuple[str, ...] | None) -> bool:
    """Whether a layer of this output shape is the classifier's output, one unit per class."""
    return len(shape) == 1 and bool(categories) and shape[0] == len(categories or ())


def dump(record: Any) -> Any:
    """A record as JSON data: dataclasses as objects, tuples as lists."""
    if isinstance(record, (str, int, float)) or record is None:
        return record
    if isinstance(record, (list, tuple)):
        return [dump(value) for value in record]
    if isinstance(record, Mapping):
        return {str(key): dump(value) for key, value in record.items()}
    kind: Any = type(record)
    return {name: dump(getattr(record, name)) for name in _names(kind)}


@functools.cache
def _reader(kind: Any) -> Callable[[Any], Any]:
    """A function that builds a value of type ``kind`` from JSON data (made once per type)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        inner = _reader(next(arg for arg in args if arg is not type(None)))
        return lambda data: None if data is None else inner(data)
    if dataclasses.is_dataclass(kind):
        record: Any = kind  # a record's class
        fields: list = []  # made at the first call: a record may hold records of its own type

        def read(data: Any) -> Any:
            if not fields:
                hints = typing.get_type_hints(kind)
                fields.extend((spec.name, _reader(hints[spec.name])) for spec in dataclasses.fields(kind))
            return record(**{name: field_reader(data[name]) for name, field_reader in fields if name in data})
        return read
    if origin is tuple:
        element = _reader(args[0])
        return lambda data: tuple(element(value) for value in data)
    if origin is not None:  # Mapping[str, X]
        value_reader = _reader(args[1])
        return lambda data: {key: value_reader(value) for key, value in data.items()}
    return lambda data: data


def load(data: Any) -> Manifest:
    """The manifest from JSON data; ValueError if it is of another format."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("it was recorded by another version of sitegen")
    try:
        return _reader(Manifest)(data)
    except (KeyError, TypeError, StopIteration) as error:
        raise ValueError(f"the manifest is damaged: {error}") from None


def save(cache: Cache, config_path: Path, manifest: Manifest) -> None:
    """Record the manifest of the config at ``config_path`` in the cache."""
    cache.write_json(manifest_name(config_path, cache.root), dump(manifest))


def read(cache: Cache, config_path: Path) -> Manifest | None:
    """The manifest last recorded for the config at ``config_path``; None if there is none, ValueError if it
    is of an older format."""
    data = cache.read_json(manifest_name(config_path, cache.root))
    return None if data is None else load(data)
