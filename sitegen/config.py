"""``atlas.toml`` -> frozen, typed dataclasses.

Every option is declared once, in ``SCHEMA``, with its type, default and a
line of documentation.  Validation collects every problem in the file and
reports them together, each naming its key; unknown keys get a did-you-mean.
Paths in the file are relative to the file.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SitegenError

METHOD_NAMES = ("guided", "deconv", "gradient")  # backprop.METHODS; repeated so config never imports torch
OPTIMIZE = "optimize"  # the method that makes an image from noise (the [optimize] table)


@dataclass(frozen=True)
class Option:
    kind: type | tuple[type, ...]
    default: Any
    doc: str
    choices: tuple | None = None
    item: type | None = None  # element type of a list
    minimum: float | None = None
    required: bool = False


SCHEMA: dict[str, dict[str, Option]] = {
    "": {
        "title": Option(str, "Neuron atlas", "The atlas's title, shown on every page."),
    },
    "model": {
        "name": Option(str, "efficientnet_lite0",
                       "A torchvision classification model name, 'efficientnet_lite0', or 'package.module:factory'."),
        "weights": Option(str, "default",
                          "'default' (the model's pretrained weights), 'none' (random init, seeded) "
                          "or a path to a state_dict file."),
        "resize": Option(int, None, "Override: resize the shorter side of images to this many pixels.", minimum=8),
        "crop": Option(int, None, "Override: centre-crop size fed to the model.", minimum=8),
        "mean": Option(list, None, "Override: per-channel mean of the normalisation.", item=float),
        "std": Option(list, None, "Override: per-channel standard deviation of the normalisation.", item=float),
        "license": Option(str, "", "Licence of the weights, shown on the about page."),
    },
    "layers": {
        "use": Option(list, None, "Layers to map, lowest first: aliases or dotted module paths.", item=str,
                      required=True),
        "neurons": Option(dict, {}, "Per layer (as named in use), which neurons to map: \"all\" (the default), "
                                    "a list of indices, or N: the N most active on each featured image "
                                    "(on a classifier's logits, its top-N predicted classes)."),
    },
    "images": {
        "featured": Option(list, [], "Featured images: files or globs.", item=str),
        "probe": Option(list, [], "Probe images for the top patches: files, folders (recursive) or globs.",
                        item=str),
        "probe_flip": Option(bool, False, "Also count the mirror image of every probe view."),
        "probe_zooms": Option(list, [1.0], "Zoomed views of each probe image: 1.0 is the whole image; "
                                           "a zoom below 1 takes that fraction of each side at the centre "
                                           "and the four corners.", item=float),
    },
    "compute": {
        "top_k": Option(int, 9, "Top patches per neuron.", minimum=1),
        "methods": Option(list, list(METHOD_NAMES), "Visualization methods; add \"optimize\" for an image "
                                                    "optimized from noise per neuron (see [optimize]).",
                          item=str, choices=METHOD_NAMES + (OPTIMIZE,)),
        "device": Option(str, "auto", "Where to compute.", choices=("auto", "cpu", "cuda")),
        "batch_size": Option(int, 16, "Images or neurons per forward pass (8 to 16 suit a CPU, more a GPU).",
                             minimum=1),
        "seed": Option(int, 0, "Seed for random initialisation."),
        "children": Option(int, 8, "Strongest children kept per neuron (and counted over its top patches).",
                           minimum=1),
        "percentiles": Option(list, [99.0, 90.0], "Besides the top patches, a patch at each of these "
                                                  "percentiles of the neuron's activation over the probe set.",
                              item=float),
    },
    "optimize": {
        "layers": Option(list, None, "Layers (as named in layers.use) whose neurons get an optimized image; "
                                     "all of them if not given.", item=str),
        "steps": Option(int, 256, "Optimization steps (Adam).", minimum=1),
        "size": Option(int, 128, "Side of the optimized images in pixels.", minimum=16),
        "lr": Option(float, 0.05, "Adam's learning rate.", minimum=0),
        "jitter": Option(int, 8, "Largest random shift per step, in pixels.", minimum=0),
        "scale": Option(float, 0.1, "Random scaling per step, up to this fraction either way.", minimum=0),
        "rotate": Option(float, 10.0, "Random rotation per step, up to this many degrees either way.", minimum=0),
    },
    "site": {
        "top_predictions": Option(int, 5, "Predictions shown per featured image.", minimum=1),
        "active_neurons": Option(int, 8, "Most active neurons listed per layer on an image page.", minimum=1),
        "tree_width": Option(int, 4, "Children of each node in an image's tree.", minimum=1),
    },
}

CREDIT_KEYS = {
    "files": Option(list, None, "Files or globs this credit covers.", item=str, required=True),
    "title": Option(str, "", "What the image shows."),
    "author": Option(str, "", "Who made it."),
    "license": Option(str, None, "Its licence.", required=True),
    "source": Option(str, "", "Where it came from."),
}


@dataclass(frozen=True)
class ModelConfig:
    name: str
    weights: str
    resize: int | None
    crop: int | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    license: str


@dataclass(frozen=True)
class ImagesConfig:
    featured: tuple[str, ...]
    probe: tuple[str, ...]
    probe_flip: bool
    probe_zooms: tuple[float, ...]


@dataclass(frozen=True)
class ComputeConfig:
    top_k: int
    methods: tuple[str, ...]
    device: str
    batch_size: int
    seed: int
    children: int
    percentiles: tuple[float, ...]


@dataclass(frozen=True)
class OptimizeConfig:
    layers: tuple[str, ...]
    steps: int
    size: int
    lr: float
    jitter: int
    scale: float
    rotate: float


@dataclass(frozen=True)
class SiteConfig:
    top_predictions: int
    active_neurons: int
    tree_width: int


@dataclass(frozen=True)
class Credit:
    files: tuple[str, ...]
    title: str
    author: str
    license: str
    source: str


@dataclass(frozen=True)
class Config:
    path: Path  # the config file
    title: str
    model: ModelConfig
    layers: tuple[str, ...]
    layer_neurons: dict[str, str | int | tuple[int, ...]]
    images: ImagesConfig
    compute: ComputeConfig
    optimize: OptimizeConfig | None  # None unless compute.methods lists "optimize"
    site: SiteConfig
    credits: tuple[Credit, ...]

    @property
    def root(self) -> Path:
        """The folder the config's relative paths start from."""
        return self.path.parent

    def weights_path(self) -> str:
        if self.model.weights in ("default", "none"):
            return self.model.weights
        return str((self.root / self.model.weights).resolve())


def _type_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _check(key: str, value: Any, option: Option, errors: list[str]) -> Any:
    kind = option.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        errors.append(f"{key}: expected {_type_name(kind)}, got {value!r}")
        return option.default
    if option.item is not None:
        items = []
        for index, item in enumerate(value):
            if option.item is float and isinstance(item, int) and not isinstance(item, bool):
                item = float(item)
            if isinstance(item, bool) or not isinstance(item, option.item):
                errors.append(f"{key}[{index}]: expected {_type_name(option.item)}, got {item!r}")
                continue
            items.append(item)
        value = items
    values = value if isinstance(value, list) else [value]
    if option.choices is not None:
        for item in values:
            if item not in option.choices:
                errors.append(f"{key}: {item!r} is not one of {', '.join(repr(c) for c in option.choices)}")
    if option.minimum is not None:
        for item in values:
            if isinstance(item, (int, float)) and item < option.minimum:
                errors.append(f"{key}: {item!r} is below the minimum {option.minimum:g}")
    return value


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
    return f"{key}: unknown key" + (f"; did you mean {close[0]!r}?" if close else "")


def _section(data: dict, table: str, errors: list[str]) -> dict[str, Any]:
    schema = SCHEMA[table]
    prefix = f"{table}." if table else ""
    values = {}
    for name, option in schema.items():
        key = prefix + name
        if name in data:
            values[name] = _check(key, data[name], option, errors)
        else:
            if option.required:
                errors.append(f"{key}: required")
            values[name] = option.default
    tables = set(SCHEMA) | {"credits"}
    for name in data:
        if name in schema or (not table and name in tables):
            continue
        errors.append(_unknown(prefix + name, list(schema) + ([t for t in tables if t] if not table else [])))
    return values


def _credits(data: Any, errors: list[str]) -> tuple[Credit, ...]:
    if data is None:
        return ()
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        errors.append("credits: expected an array of tables ([[credits]])")
        return ()
    credits = []
    for index, item in enumerate(data):
        values = {}
        for name, option in CREDIT_KEYS.items():
            key = f"credits[{index}].{name}"
            if name in item:
                values[name] = _check(key, item[name], option, errors)
            elif option.required:
                errors.append(f"{key}: required")
                values[name] = option.default
            else:
                values[name] = option.default
        for name in item:
            if name not in CREDIT_KEYS:
                errors.append(_unknown(f"credits[{index}].{name}", list(CREDIT_KEYS)))
        credits.append(Credit(tuple(values["files"] or ()), values["title"], values["author"],
                              values["license"] or "", values["source"]))
    return tuple(credits)


def parse(text: str, path: Path) -> Config:
    """Validate the text of a config file; raise one SitegenError listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SitegenError(f"{path}: not valid TOML: {error}") from None
    errors: list[str] = []
    tables = {}
    for table in SCHEMA:
        if not table:
            continue
        section = data.get(table, {})
        if not isinstance(section, dict):
            errors.append(f"{table}: expected a table ([{table}])")
            section = {}
        tables[table] = _section(section, table, errors)
    top = _section({k: v for k, v in data.items() if k not in SCHEMA or k == ""}, "", errors)
    credits = _credits(data.get("credits"), errors)

    model, layers, images, compute = tables["model"], tables["layers"], tables["images"], tables["compute"]
    for name in ("mean", "std"):
        if model[name] is not None and len(model[name]) != 3:
            errors.append(f"model.{name}: expected 3 numbers (one per colour channel), got {len(model[name])}")
    if model["std"] is not None and any(v == 0 for v in model["std"]):
        errors.append("model.std: must not contain 0")
    if layers["use"] is not None and len(set(layers["use"])) != len(layers["use"]):
        errors.append("layers.use: a layer is listed twice")
    if not layers["use"] and "layers.use: required" not in errors:
        errors.append("layers.use: list at least one layer")
    layer_neurons = {}
    for name, choice in (layers["neurons"] or {}).items():
        key = f"layers.neurons.{name}"
        if name not in (layers["use"] or []):
            errors.append(f"{key}: {name!r} is not in layers.use")
        elif choice == "all" or (isinstance(choice, int) and not isinstance(choice, bool) and choice >= 1):
            layer_neurons[name] = choice
        elif isinstance(choice, list) and choice and all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in choice):
            layer_neurons[name] = tuple(choice)
        else:
            errors.append(f"{key}: expected \"all\", a positive integer or a list of neuron indices, "
                          f"got {choice!r}")
    for zoom in images["probe_zooms"]:
        if not 0 < zoom <= 1:
            errors.append(f"images.probe_zooms: {zoom!r} is not in (0, 1]")
    for percentile in compute["percentiles"]:
        if not 0 <= percentile <= 100:
            errors.append(f"compute.percentiles: {percentile!r} is not in [0, 100]")
    if not [m for m in compute["methods"] if m != OPTIMIZE]:
        errors.append(f"compute.methods: list at least one of {', '.join(METHOD_NAMES)} (the top patches and "
                      f"featured images need one)")
    optimize = tables["optimize"]
    wants_optimize = OPTIMIZE in compute["methods"]
    if "optimize" in data and not wants_optimize:
        errors.append("optimize: the table is set, but compute.methods does not list \"optimize\"")
    for name in optimize["layers"] or []:
        if name not in (layers["use"] or []):
            errors.append(f"optimize.layers: {name!r} is not in layers.use")
    if errors:
        raise SitegenError(f"{path}: {len(errors)} problem(s) in the config:\n" +
                           "\n".join(f"  - {e}" for e in errors))
    return Config(
        path=path.resolve(), title=top["title"],
        model=ModelConfig(model["name"], model["weights"], model["resize"], model["crop"],
                          tuple(model["mean"]) if model["mean"] else None,
                          tuple(model["std"]) if model["std"] else None, model["license"]),
        layers=tuple(layers["use"]),
        layer_neurons=layer_neurons,
        images=ImagesConfig(tuple(images["featured"]), tuple(images["probe"]), images["probe_flip"],
                            tuple(images["probe_zooms"])),
        compute=ComputeConfig(compute["top_k"], tuple(m for m in dict.fromkeys(compute["methods"]) if m != OPTIMIZE),
                              compute["device"],
                              compute["batch_size"], compute["seed"], compute["children"],
                              tuple(compute["percentiles"])),
        optimize=OptimizeConfig(tuple(optimize["layers"] or layers["use"]), optimize["steps"], optimize["size"],
                                optimize["lr"], optimize["jitter"], optimize["scale"], optimize["rotate"])
        if wants_optimize else None,
        site=SiteConfig(**tables["site"]),
        credits=credits,
    )


def load(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise SitegenError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SitegenError(f"config file {str(path)!r} could not be read: {error}") from None
    return parse(text, path)
