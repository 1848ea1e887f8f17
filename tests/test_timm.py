"""timm models as model.name = "timm:NAME": preprocessing from the model's pretrained_cfg, aliases of its
stages and blocks, and a GELU model's atlas end to end (its GELUs keep their true gradient)."""

import pytest
from conftest import write_images
from typer.testing import CliRunner

from sitegen.check import check_site
from sitegen.cli import app
from sitegen.errors import SitegenError
from sitegen.model.registry import load_model

CONFIG = """
title = "ConvNeXt"
[model]
name = "timm:convnext_atto"
weights = "none"
resize = 72
crop = 64
[layers]
use = ["stage1", "stage2.block1", "logits"]
neurons = { "stage1" = [0, 1, 2], "stage2.block1" = [0, 1, 2], logits = 2 }
[images]
featured = ["imgs/img0.png"]
probe = ["imgs"]
[compute]
top_k = 2
batch_size = 4
methods = ["guided", "gradient"]
"""


def test_a_timm_model_loads_with_its_preprocessing_and_aliases():
    loaded = load_model("timm:convnext_atto", "none")
    assert (loaded.preprocess.crop, loaded.preprocess.resize) == (224, 256)  # crop_pct 0.875
    assert loaded.preprocess.interpolation == "bicubic"
    assert loaded.aliases["stage2"] == "stages.1" and loaded.aliases["stage2.block1"] == "stages.1.blocks.1"
    assert loaded.aliases["logits"] == "head.fc" and len(loaded.categories) == 1000
    assert load_model("timm:resnet10t", "none").aliases["stage2"] == "layer1"
    with pytest.raises(SitegenError, match="timm has no model 'convnext_tiy'.*convnext_tiny"):
        load_model("timm:convnext_tiy", "none")
    assert load_model("timm:convnext_atto.d2_in1k", "none").aliases["stage1"] == "stages.0"  # a pretrained tag


def test_a_gelu_models_atlas_says_what_its_methods_change(tmp_path):
    write_images(tmp_path / "imgs", 4)
    (tmp_path / "atlas.toml").write_text(CONFIG)
    result = CliRunner().invoke(app, ["build", "--config", str(tmp_path / "atlas.toml"), "--cache",
                                      str(tmp_path / "cache"), "--out", str(tmp_path / "site"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    assert not check_site(site)[1]
    assert "This model also uses GELU" in (site / "about.html").read_text()
    assert "differ from the gradient only at the model's ReLUs" in (
        site / "layers" / "stage2.block1" / "0.html").read_text()
    listing = CliRunner().invoke(app, ["layers", "timm:convnext_atto"])
    assert listing.exit_code == 0 and "stage2.block1" in listing.output
