"""``atlas.toml`` -> frozen, typed dataclasses.

Every option is declared once: a field of its table's dataclass, whose type
annotation is the type the file must give, with its default and a line of
documentation (``option``).  ``SCHEMA`` maps each TOML table to its class.
Validation collects every problem in the file and reports them together, each
naming its key; unknown keys get a did-you-mean.  Paths in the file are
relative to the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SitegenError
from .methods import METHODS, OPTIMIZE, PATCH_KINDS, PICTURE_METHODS, RULE_METHODS


def option(default: Any, doc: str, *, choices: tuple | None = None, minimum: float | None = None,
           maximum: float | None = None, required: bool = False) -> Any:
    """A config option: a dataclass field with its documentation and limits."""
    metadata = {"doc": doc, "choices": choices, "minimum": minimum, "maximum": maximum, "required": required}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TopConfig:
    title: str = option("Neuron atlas", "The atlas's title, shown on every page.")


@dataclass(frozen=True)
class ModelConfig:
    name: str = option("efficientnet_lite0", "A torchvision classification model name, 'efficientnet_lite0', "
                                             "or 'package.module:factory'.")
    weights: str = option("default", "'default' (the model's pretrained weights), 'none' (random init, seeded) "
                                     "or a path to a state_dict file.")
    resize: int | None = option(None, "Override: resize the shorter side of images to this many pixels.", minimum=8)
    crop: int | None = option(None, "Override: the side of the centre crop fed to the model.", minimum=8)
    mean: tuple[float, ...] | None = option(None, "Override: per-channel mean of the normalisation.")
    std: tuple[float, ...] | None = option(None, "Override: per-channel standard deviation of the normalisation.")
    license: str = option("", "Licence of the weights, shown on the about page.")


@dataclass(frozen=True)
class LayersConfig:
    use: tuple[str, ...] = option((), "Layers to map, lowest first: aliases or dotted module paths.", required=True)
    neurons: Mapping[str, Any] = option({}, "Per layer (as named in use), which neurons to map: \"all\" (the "
                                            "default), a list of indices, or N: the N most active on each featured "
                                            "image (on a classifier's logits, its top-N predicted classes).")
    methods: Mapping[str, Any] = option({}, "Per layer (as named in use), the visualization methods its featured "
                                            "pictures show, instead of compute.methods (say, no deconvnet where "
                                            "it shows only its lattice).")
    patches: Mapping[str, Any] = option({}, "Per layer (as named in use), what its top patches show beside each "
                                            "photo: a method's picture (\"guided\", the default, or another) or "
                                            "\"map\" (where the neuron fires on it): for a layer whose guided "
                                            "backprop fails the randomization check.")


@dataclass(frozen=True)
class ImagesConfig:
    featured: tuple[str, ...] = option((), "Featured images: files or globs.")
    probe: tuple[str, ...] = option((), "Probe images for the top patches: files, folders (recursive) or globs.")
    featured_in_probe: bool = option(False, "Also count the featured images as probe images (they are left "
                                            "out by default, so that top patches come from other photos).")
    probe_flip: bool = option(False, "Also count the mirror image of every probe view.")
    probe_zooms: tuple[float, ...] = option((1.0,), "Zoomed views of each probe image: 1.0 is the whole image; a "
                                                    "zoom below 1 takes that fraction of each side at the centre "
                                                    "and the four corners.")
    labels: str = option("", "The probe images' classes: \"folders\" (each file's parent folder, as in an "
                             "ImageFolder tree) or a CSV file of (file, label) rows, files relative to the config. "
                             "Neurons are then named by the classes of their top images.")
    label_top: int | None = option(None, "With labels: the top-N probe images of each neuron whose classes are "
                                         "counted (besides its top_k patches); a quarter of the probe set's files "
                                         "(at least top_k) if not given.", minimum=1)


@dataclass(frozen=True)
class ComputeConfig:
    top_k: int = option(9, "Top patches per neuron.", minimum=1)
    per_photo: int | None = option(None, "At most this many of a neuron's top patches from one probe photo (its "
                                         "mirror image and zoomed parts are views of it): the best views of more "
                                         "photos instead of many views of one; no limit if not given.", minimum=1)
    methods: tuple[str, ...] = option(RULE_METHODS, "Visualization methods; add \"optimize\" for an image "
                                                    "optimized from noise per neuron (see [optimize]).",
                                      choices=tuple(method.name for method in METHODS))
    device: str = option("auto", "Where to compute.", choices=("auto", "cpu", "cuda"))
    batch_size: int = option(16, "Images or neurons per forward pass (8 to 16 suit a CPU, more a GPU).", minimum=1)
    seed: int = option(0, "Seed for random initialisation.")
    children: int = option(8, "Strongest children kept per neuron (and counted over its top patches).", minimum=1)
    percentiles: tuple[float, ...] = option((99.0, 90.0), "Besides the top patches, a patch at each of these "
                                                          "percentiles of the neuron's activation over the probe set.")
    sanity: bool = option(True, "The randomization check of each layer's methods (Adebayo et al.): how far its "
                                "pictures depend on what the layer learned.")


@dataclass(frozen=True)
class OptimizeConfig:
    layers: tuple[str, ...] | None = option(None, "Layers (as named in layers.use) whose neurons get an optimized "
                                                  "image; all of them if not given.")
    steps: int = option(256, "Optimization steps (Adam).", minimum=1)
    size: int = option(128, "Side of the optimized images in pixels.", minimum=16)
    lr: float = option(0.05, "Adam's learning rate.", minimum=0)
    jitter: int = option(8, "Largest random shift per step, in pixels.", minimum=0)
    scale: float = option(0.1, "Random scaling per step, up to this fraction either way.", minimum=0)
    rotate: float = option(10.0, "Random rotation per step, up to this many degrees either way.", minimum=0)


@dataclass(frozen=True)
class SmoothGradConfig:
    samples: int = option(16, "SmoothGrad's noisy copies of each image.", minimum=1)
    noise: float = option(0.15, "The noise's standard deviation, as a share of the image's range (its largest "
                                "value less its smallest).", minimum=0)
    seed: int = option(0, "Image i of a call draws its noise from torch.Generator().manual_seed(seed + i); each "
                          "featured image is its own call.")


@dataclass(frozen=True)
class EffectsConfig:
    layers: tuple[str, ...] = option((), "Layers (as named in layers.use) whose neurons say what they do to the "
                                         "classes: the classes whose logit they raise most over the probe set.")
    top: int = option(5, "A class is a candidate where it is among the top N predictions of some probe view.",
                      minimum=1)
    shown: int = option(5, "Classes shown per neuron: its largest first-order effects.", minimum=1)
    exact: int = option(3, "Of those, how many also get the exact effect, the logit lost with the neuron zeroed.",
                        minimum=0)
    ablated: int | None = option(None, "Neurons per layer whose exact effects are computed, spread evenly over "
                                       "the mapped ones (each costs a forward pass of what follows the layer per "
                                       "probe view); all of them if not given.", minimum=0)


@dataclass(frozen=True)
class SiteConfig:
    top_predictions: int = option(5, "Predictions shown per featured image.", minimum=1)
    active_neurons: int = option(8, "Most active neurons listed per layer on an image page.", minimum=1)
    raw_html: bool = option(False, "Let the Markdown notes and pages keep any HTML, scripts included, instead of "
                                   "a safe subset: only for an atlas whose notes have one trusted author.")
    quality: int = option(52, "AVIF quality (1 to 100) of the sheets that hold every picture but the small and the "
                              "optimized ones: lower makes a smaller site whose gradient pictures lose their faint "
                              "pixels (bench/legibility.py measures how many).", minimum=1, maximum=100)


@dataclass(frozen=True)
class Credit:
    files: tuple[str, ...] = option((), "Files or globs this credit covers.", required=True)
    title: str = option("", "What the image shows.")
    author: str = option("", "Who made it.")
    license: str = option("", "Its licence.", required=True)
    source: str = option("", "Where it came from.")


@dataclass(frozen=True)
class TreesConfig:
    layers: tuple[str, ...] = option((), "Besides the top predicted class (or, without a classifier, the top "
                                         "layer's most active neuron), the layers (as named in layers.use) whose "
                                         "most active neurons on each featured image root a tree of their own.")
    roots: int = option(1, "Trees per layer of trees.layers: its most active mapped neurons.", minimum=1)
    nodes: str = option("parts", "What a node's children are: \"parts\", groups of the layer below's channels "
                                 "that together carry all of the node's positive path weight, each group the "
                                 "channels that give it their evidence in the same place; or \"neurons\", its "
                                 "strongest channels alone.", choices=("parts", "neurons"))
    parts: tuple[int, ...] = option((5, 3, 2), "With nodes = \"parts\": at most this many parts under a node at "
                                               "each depth below the root, the last for every depth below.",
                                    minimum=1)
    widths: tuple[int, ...] = option((4, 3, 2), "With nodes = \"neurons\": children of a node at each depth below "
                                                "the root, the last for every depth below: the strongest positive "
                                                "path weights.", minimum=1)
    method: str = option("guided", "The method of the path pictures.", choices=RULE_METHODS)


@dataclass(frozen=True)
class CompareConfig:
    weights: str = option("", "The other checkpoint of the same architecture, to compare this atlas's model "
                              "with: a path to a state_dict file, 'default' or 'none'.", required=True)
    label: str = option("", "How pages name the other checkpoint (\"epoch 60\"); its file name if not given.")
    match: str = option("index", "How neurons are matched: \"index\" (neuron c is neuron c, as after a "
                                 "fine-tune) or \"activations\" (one to one, by the correlation of their "
                                 "activations over the probe set: for independent runs or permuted channels).",
                        choices=("index", "activations"))


# Each TOML table and the class that declares its options; "" is the top level.  [[credits]] is an array.
SCHEMA = {"": TopConfig, "model": ModelConfig, "layers": LayersConfig, "images": ImagesConfig,
          "compute": ComputeConfig, "optimize": OptimizeConfig, "smoothgrad": SmoothGradConfig,
          "effects": EffectsConfig, "trees": TreesConfig, "site": SiteConfig, "compare": CompareConfig}


@dataclass(frozen=True)
class Config:
    path: Path  # the config file
    title: str
    model: ModelConfig
    layers: LayersConfig  # layers.neurons holds "all", an int or a tuple of indices per listed layer;
    # layers.methods a tuple of ReLU-rule methods for every listed layer (compute.methods where not given)
    images: ImagesConfig
    compute: ComputeConfig  # compute.methods: the picture methods (not "optimize"), each once
    optimize: OptimizeConfig | None  # None unless compute.methods lists "optimize"; layers always set
    trees: TreesConfig
    site: SiteConfig
    credits: tuple[Credit, ...]
    compare: CompareConfig | None = None  # None without a [compare] table; its label always set
    smoothgrad: SmoothGradConfig = SmoothGradConfig()  # read where a layer's methods list "smoothgrad"
    effects: EffectsConfig = EffectsConfig()

    @property
    def root(self) -> Path:
        """The folder the config's relative paths start from."""
        return self.path.parent

    def weights_path(self) -> str:
        return self._weights(self.model.weights)

    def compare_weights_path(self) -> str:
        return self._weights(self.compare.weights) if self.compare else ""

    def _weights(self, weights: str) -> str:
        if weights in ("default", "none"):
            return weights
        return str((self.root / weights).resolve())


def _expected(annotation: Any) -> tuple[type, type | None]:
    """What an option's annotation asks of the file: (type, element type of a list)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return list, typing.get_args(annotation)[0]
    if origin is not None:  # Mapping[...]
        return dict, None
    return annotation, None


def _type_name(kind: type) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "a table"}
    return names.get(kind, kind.__name__)


def _fits(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (an integer counts as a number), or None if it does not fit."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        return None
    return value


def _default(spec: dataclasses.Field) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    factory: Any = spec.default_factory  # every option without a default has a factory (``option``)
    return factory()


def _check(key: str, value: Any, spec: dataclasses.Field, annotation: Any, errors: list[str]) -> Any:
    kind, element_kind = _expected(annotation)
    checked = _fits(value, kind)
    if checked is None:
        errors.append(f"{key}: expected {_type_name(kind)}, got {value!r}")
        return _default(spec)
    if element_kind is not None:
        elements = []
        for index, element in enumerate(checked):
            fitted = _fits(element, element_kind)
            if fitted is None:
                errors.append(f"{key}[{index}]: expected {_type_name(element_kind)}, got {element!r}")
            else:
                elements.append(fitted)
        checked = tuple(elements)
    values = checked if isinstance(checked, tuple) else [checked]
    choices, minimum, maximum = (spec.metadata[name] for name in ("choices", "minimum", "maximum"))
    for element in values:
        if choices is not None and element not in choices:
            errors.append(f"{key}: {element!r} is not one of {', '.join(repr(c) for c in choices)}")
        if minimum is not None and isinstance(element, (int, float)) and element < minimum:
            errors.append(f"{key}: {element!r} is below the minimum {minimum:g}")
        if maximum is not None and isinstance(element, (int, float)) and element > maximum:
            errors.append(f"{key}: {element!r} is above the maximum {maximum:g}")
    return checked


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
    return f"{key}: unknown key" + (f"; did you mean {close[0]!r}?" if close else "")


def _table(data: dict, prefix: str, cls: type, errors: list[str], also: tuple[str, ...] = ()) -> Any:
    """One table's values as ``cls``, every problem appended to ``errors``; ``also``: keys that are
    tables of their own (at the top level)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for spec in dataclasses.fields(cls):
        key = prefix + spec.name
        if spec.name in data:
            values[spec.name] = _check(key, data[spec.name], spec, hints[spec.name], errors)
        elif spec.metadata["required"]:
            errors.append(f"{key}: required")
    names = [spec.name for spec in dataclasses.fields(cls)]
    for name in data:
        if name not in names and name not in also:
            errors.append(_unknown(prefix + name, names + [t for t in also if t]))
    return cls(**values)


def _credits(data: Any, errors: list[str]) -> tuple[Credit, ...]:
    if data is None:
        return ()
    if not isinstance(data, list) or not all(isinstance(table, dict) for table in data):
        errors.append("credits: expected an array of tables ([[credits]])")
        return ()
    return tuple(_table(table, f"credits[{index}].", Credit, errors) for index, table in enumerate(data))


def _layer_neurons(layers: LayersConfig, errors: list[str]) -> dict[str, Any]:
    chosen = {}
    for name, choice in layers.neurons.items():
        key = f"layers.neurons.{name}"
        if name not in layers.use:
            errors.append(f"{key}: {name!r} is not in layers.use")
        elif choice == "all" or (isinstance(choice, int) and not isinstance(choice, bool) and choice >= 1):
            chosen[name] = choice
        elif isinstance(choice, list) and choice and all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in choice):
            chosen[name] = tuple(choice)
        else:
            errors.append(f"{key}: expected \"all\", a positive integer or a list of neuron indices, got {choice!r}")
    return chosen


def _layer_methods(layers: LayersConfig, compute: ComputeConfig, errors: list[str]) -> dict[str, tuple[str, ...]]:
    """Each listed layer's methods: its own where layers.methods gives them, else compute.methods'; and
    layers.patches checked."""
    default = tuple(m for m in dict.fromkeys(compute.methods) if m != OPTIMIZE)
    chosen = {name: default for name in layers.use}
    for setting, given, fits, expected in (
            ("methods", layers.methods, lambda v: isinstance(v, list) and v and all(m in PICTURE_METHODS for m in v),
             f"a list of {', '.join(PICTURE_METHODS)}"),
            ("patches", layers.patches, lambda v: v in PATCH_KINDS, f"one of {', '.join(PATCH_KINDS)}")):
        for name, value in given.items():
            if name not in layers.use:
                errors.append(f"layers.{setting}.{name}: {name!r} is not in layers.use")
            elif not fits(value):
                errors.append(f"layers.{setting}.{name}: expected {expected}, got {value!r}")
            elif setting == "methods":
                chosen[name] = tuple(dict.fromkeys(value))
    return chosen


def _cross_checks(data: dict, tables: dict[str, Any], errors: list[str], root: Path) -> dict[str, Any]:
    """Problems that involve more than one option; returns layers.neurons, checked."""
    model, layers, images, compute = tables["model"], tables["layers"], tables["images"], tables["compute"]
    for name in ("mean", "std"):
        values = getattr(model, name)
        if values is not None and len(values) != 3:
            errors.append(f"model.{name}: expected 3 numbers (one per colour channel), got {len(values)}")
    if model.std is not None and any(v == 0 for v in model.std):
        errors.append("model.std: must not contain 0")
    twice = sorted({name for name in layers.use if layers.use.count(name) > 1})
    if twice:
        errors.append(f"layers.use: {', '.join(repr(name) for name in twice)} listed more than once")
    if not layers.use and "layers.use: required" not in errors:
        errors.append("layers.use: list at least one layer")
    neurons = _layer_neurons(layers, errors)
    for zoom in images.probe_zooms:
        if not 0 < zoom <= 1:
            errors.append(f"images.probe_zooms: {zoom!r} is not in (0, 1]")
    for percentile in compute.percentiles:
        if not 0 <= percentile <= 100:
            errors.append(f"compute.percentiles: {percentile!r} is not in [0, 100]")
    if not [m for m in compute.methods if m != OPTIMIZE]:
        errors.append(f"compute.methods: list at least one of {', '.join(RULE_METHODS)} (the top patches and "
                      f"featured images need one)")
    if "optimize" in data and OPTIMIZE not in compute.methods:
        errors.append("optimize: the table is set, but compute.methods does not list \"optimize\"")
    for name in tables["optimize"].layers or ():
        if name not in layers.use:
            errors.append(f"optimize.layers: {name!r} is not in layers.use")
    for table in ("trees", "effects"):
        for name in tables[table].layers:
            if name not in layers.use:
                errors.append(f"{table}.layers: {name!r} is not in layers.use")
    for name in ("widths", "parts"):
        if not getattr(tables["trees"], name):
            errors.append(f"trees.{name}: list at least one number")
    if images.labels not in ("", "folders") and not (root / images.labels).is_file():
        errors.append(f"images.labels: {images.labels!r} is neither \"folders\" nor a CSV file (paths are relative "
                      f"to the config)")
    compare = tables["compare"]
    if compare and compare.weights not in ("default", "none") and not (root / compare.weights).is_file():
        errors.append(f"compare.weights: {compare.weights!r} is not a file (paths are relative to the config)")
    return neurons


def parse(text: str, path: Path) -> Config:
    """Validate the text of a config file; raise one SitegenError listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SitegenError(f"{path}: not valid TOML: {error}") from None
    errors: list[str] = []
    tables: dict[str, Any] = {}
    for name, cls in SCHEMA.items():
        if name == "compare" and name not in data:  # an optional table: its required key only where it is
            tables[name] = None
        elif name:
            section = data.get(name, {})
            if not isinstance(section, dict):
                errors.append(f"{name}: expected a table ([{name}])")
                section = {}
            tables[name] = _table(section, f"{name}.", cls, errors)
    tables[""] = _table(data, "", TopConfig, errors, also=(*SCHEMA, "credits"))
    credits = _credits(data.get("credits"), errors)
    neurons = _cross_checks(data, tables, errors, path.parent)
    layers, compute, optimize, compare = tables["layers"], tables["compute"], tables["optimize"], tables["compare"]
    methods = _layer_methods(layers, compute, errors)
    if errors:
        raise SitegenError(f"{path}: {len(errors)} problem(s) in the config:\n" +
                           "\n".join(f"  - {e}" for e in errors))
    return Config(
        path=path.resolve(), title=tables[""].title, model=tables["model"],
        layers=dataclasses.replace(layers, neurons=neurons, methods=methods), images=tables["images"],
        compute=dataclasses.replace(compute, methods=tuple(m for m in dict.fromkeys(compute.methods)
                                                           if m != OPTIMIZE)),
        optimize=dataclasses.replace(optimize, layers=optimize.layers or layers.use)
        if OPTIMIZE in compute.methods else None,
        trees=tables["trees"], site=tables["site"], credits=credits, smoothgrad=tables["smoothgrad"],
        effects=tables["effects"],
        compare=dataclasses.replace(compare, label=compare.label or Path(compare.weights).name)
        if compare else None)


def load(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise SitegenError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SitegenError(f"config file {str(path)!r} could not be read: {error}") from None
    return parse(text, path)
