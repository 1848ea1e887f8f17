"""timm models (``model.name = "timm:NAME"``, any ``timm.list_models()`` name): the optional extra
``pip install 'sitegen[timm]'``.  Preprocessing comes from the model's ``pretrained_cfg``; layer aliases from
its feature stages: ``stage1`` ... (each stage's output), ``stage2.block0`` ... (its blocks) and ``logits``
(the classifier)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import SitegenError

PREFIX = "timm:"


def _timm():
    try:
        import timm
    except ImportError:
        raise SitegenError("model.name 'timm:...' needs timm: pip install 'sitegen[timm]'") from None
    return timm


def aliases(module: nn.Module) -> dict[str, str]:
    """``stageN`` for each feature stage (timm's ``feature_info``), ``stageN.blockM`` for its blocks, and
    ``logits`` for the classifier."""
    found: dict[str, str] = {}
    modules = dict(module.named_modules())
    channels_first = getattr(module, "output_fmt", "NCHW") == "NCHW"  # a Swin's stages give [H, W, C]: no aliases
    stages = [info["module"] for info in getattr(module, "feature_info", [])
              if info.get("module") in modules and channels_first]
    for number, path in enumerate(stages, start=1):
        found[f"stage{number}"] = path
        blocks = modules[path].blocks if hasattr(modules[path], "blocks") else modules[path]
        prefix = f"{path}.blocks" if hasattr(modules[path], "blocks") else path
        if isinstance(blocks, nn.Sequential):
            for index, _ in enumerate(blocks):
                found[f"stage{number}.block{index}"] = f"{prefix}.{index}"
    classifier = getattr(module, "pretrained_cfg", {}).get("classifier")
    if isinstance(classifier, str) and classifier in modules and not isinstance(modules[classifier], nn.Identity):
        found["logits"] = classifier
    return found


def load(name: str, weights: str, seed: int, load_state_dict: Callable[[nn.Module, Path], None],
         imagenet: Callable[[], tuple[str, ...]]) -> dict:
    """The fields of a LoadedModel for ``timm:NAME``."""
    timm = _timm()
    arch = name[len(PREFIX):]
    if not timm.is_model(arch.split(".")[0]):  # a name may carry a pretrained tag: convnext_tiny.fb_in1k
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f" Did you mean {' or '.join(repr(PREFIX + c) for c in close)}?" if close else ""
        raise SitegenError(f"model.name {name!r}: timm has no model {arch!r}.{hint}")
    torch.manual_seed(seed)
    if weights == "default":
        try:
            module = timm.create_model(arch, pretrained=True)
        except Exception as error:  # noqa: BLE001 - network, hub or cache failures
            raise SitegenError(
                f"could not load timm's pretrained weights for {arch!r}: {error}. Offline, give model.weights "
                f"as a path to a state_dict file") from None
        described = f"timm pretrained ({getattr(module, 'pretrained_cfg', {}).get('tag') or 'default'})"
    else:
        module = timm.create_model(arch, pretrained=False)
        described = f"random initialisation (seed {seed})"
        if weights != "none":
            load_state_dict(module, Path(weights))
            described = f"state_dict file {Path(weights).name}"
    config = timm.data.resolve_data_config({}, model=module)
    crop = int(config["input_size"][-1])
    preprocess = {"resize": int(math.floor(crop / config.get("crop_pct", 1.0))), "crop": crop,
                  "mean": tuple(float(v) for v in config["mean"]), "std": tuple(float(v) for v in config["std"]),
                  "interpolation": str(config.get("interpolation", "bilinear"))}
    categories = imagenet() if getattr(module, "num_classes", 0) == 1000 else None
    return {"name": name, "module": module, "preprocess": preprocess, "categories": categories, "weights": described,
            "weights_license": getattr(module, "pretrained_cfg", {}).get("license", "") if weights == "default"
            else ""}
