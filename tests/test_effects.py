"""What a neuron does to the classes (DESIGN §2): sitegen.effects against a one-image, one-neuron, one-class
reference (tests/reference.py) on randomly initialised models."""

import pytest
import torch
from reference import reference_effects
from test_visualize import alive

import sitegen
from sitegen.model.registry import load_model

CASES = [
    ("alexnet", "conv5", "features.11", 80, [0, 17, 200]),
    ("alexnet", "fc7", "classifier.5", 80, None),  # None: units alive on both images
    ("resnet18", "layer3", "layer3", 64, [2, 100]),  # in-place ReLUs after the layer and residual branches
    ("efficientnet_lite0", "block10", "_blocks.10", 64, [0, 50]),
]


@pytest.mark.parametrize("copied", [1, None])  # 1: batch_size copies per pass (chunks of 2 and 1); None: all
@pytest.mark.parametrize("name,layer,path,size,neurons", CASES)
def test_effects_match_the_reference(name, layer, path, size, neurons, copied, monkeypatch):
    if copied is not None:
        monkeypatch.setattr("sitegen.engine.effects.COPIED", copied)
    torch.manual_seed(3)
    model = load_model(name, "none").module.double()
    images = torch.randn(2, 3, size, size, dtype=torch.float64)
    if neurons is None:
        neurons = alive(model, images, path)[:2]
    classes = [1, 7, 999]
    first, exact = sitegen.effects(model, images, layer, neurons, classes, batch_size=2)
    want_first, want_exact = reference_effects(model, images, path, neurons, classes)
    assert first.shape == exact.shape == (len(neurons), len(classes))
    scale = want_first.abs().max()
    assert scale > 0
    assert (first - want_first).abs().max() <= 1e-9 * scale
    assert (exact.double() - want_exact).abs().max() <= 1e-5 * want_exact.abs().max()


def test_a_linear_head_s_first_order_effect_is_its_ablation():
    """Logits linear in a layer's output: zeroing a unit loses exactly its activation times its weight."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.ReLU(), torch.nn.Linear(6, 4))
    images = torch.randn(3, 3, 2, 2)
    first, exact = sitegen.effects(model, images, "2", [0, 3, 5], [0, 2])
    assert torch.allclose(first, exact, atol=1e-6)
    assert not torch.allclose(first, torch.zeros_like(first))


class LaterConcat(torch.nn.Module):
    """A model that joins a tensor from before the layer to what follows it along the channels: copies of the
    layer's output beside one image cannot be joined to it, so ablations run whole copies of the image."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.layer = torch.nn.Sequential(torch.nn.Conv2d(4, 5, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(9, 3)

    def forward(self, x):
        stem = self.stem(x)
        joined = torch.cat([self.layer(stem), stem], dim=1)
        return self.head(joined.mean(dim=(2, 3)))


def test_ablations_fall_back_to_whole_copies_where_copies_at_the_layer_cannot_run():
    from sitegen.engine.effects import _expands

    torch.manual_seed(0)
    model = LaterConcat().double().eval()
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    assert not _expands(model, images[:1], model.layer, [0, 1])
    first, exact = sitegen.effects(model, images, "layer", [0, 2, 4], [0, 1, 2])
    want_first, want_exact = reference_effects(model, images, "layer", [0, 2, 4], [0, 1, 2])
    assert torch.allclose(first.double(), want_first, atol=1e-9) and torch.allclose(exact.double(), want_exact,
                                                                                   atol=1e-6)
    resnet = load_model("resnet18", "none").module.double().eval()
    assert _expands(resnet, torch.randn(1, 3, 64, 64, dtype=torch.float64), resnet.layer3, [0, 1])


def test_efficientnet_lite_s_ablations_run_only_what_follows_the_layer():
    """The default model's forward (model/lite.py) gives the package's numbers and keeps copies made at a layer
    apart, so an ablation runs only the blocks above the layer."""
    from efficientnet_lite_pytorch import EfficientNet

    from sitegen.engine.effects import _expands

    torch.manual_seed(0)
    model = load_model("efficientnet_lite0", "none").module.double().eval()
    images = torch.randn(3, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(model(images), EfficientNet.forward(model, images))
    assert _expands(model, images[:1], model._blocks[15], [0, 1]) is True


def test_the_atlas_s_effects_are_the_api_s_over_the_probe_set(tmp_path):
    """[effects]: each neuron's first-order effects over the probe views as sitegen.effects gives them, the
    exact ones for the neurons ablated as the reference gives them, on its page and in manifest.json."""
    import json

    from conftest import TINY_MODEL, write_images
    from typer.testing import CliRunner

    from sitegen.cli import app
    from sitegen.config import load
    from sitegen.pipeline.workspace import Workspace
    from sitegen.store.cache import Cache

    write_images(tmp_path / "imgs", 5)
    (tmp_path / "atlas.toml").write_text(TINY_MODEL + """[layers]
use = ["features.3", "features.6", "fc"]
[images]
featured = ["imgs/img0.png"]
probe = ["imgs"]
probe_flip = true
[compute]
top_k = 2
methods = ["guided"]
[effects]
layers = ["features.3", "features.6"]
top = 2
shown = 3
exact = 2
ablated = 4
""")
    result = CliRunner().invoke(app, ["build", "-c", str(tmp_path / "atlas.toml"), "--cache", str(tmp_path / "cache"),
                                      "-o", str(tmp_path / "site"), "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "site" / "manifest.json").read_text())
    with Workspace.open(load(tmp_path / "atlas.toml"), Cache(tmp_path / "cache"), "cpu", quiet=True,
                        encode=False) as ws:
        images = ws.tensor([ws.pixels(item) for item in ws.probe])
        model = ws.model.module
        with torch.no_grad():
            candidates = sorted(set(model(images).topk(2, dim=1).indices.flatten().tolist()))
        # the build computed both layers' first-order effects in one backward pass per view and class;
        # sitegen.effects computes each layer's alone
        for name in ("features.3", "features.6"):
            layer = next(entry for entry in data["layers"] if entry["name"] == name)
            neurons = [record["neuron"] for record in layer["neurons"]]
            first, _ = sitegen.effects(model, images, name, neurons, candidates, ablate=False)
            exact = 0
            for row, record in enumerate(layer["neurons"]):
                neuron, effects = record["neuron"], record["effects"]
                assert len(effects) == min(3, len(candidates))
                want = sorted(((float(first[row, k]), c) for k, c in enumerate(candidates)), key=lambda t: -t[0])[:3]
                assert [e["class"] for e in effects] == [c for _, c in want]
                assert [e["first_order"] for e in effects] == pytest.approx([v for v, _ in want], rel=1e-3, abs=1e-6)
                for e in effects:
                    if e["ablation"] is not None:
                        exact += 1
                        _, lost = reference_effects(model.double(), images.double(), name, [neuron], [e["class"]])
                        model.float()
                        assert e["ablation"] == pytest.approx(float(lost[0, 0]), rel=1e-3, abs=1e-5)
            assert exact == 4 * 2  # four neurons ablated, their two strongest classes each
            rows = [[e["ablation"] for e in record["effects"] if e["ablation"] is not None]
                    for record in layer["neurons"]]
            rows = [row for row in rows if len(row) >= 2]  # listed in first-order order
            assert layer["effects_first_class_right"] == [sum(row[0] == max(row) for row in rows), len(rows)] == \
                [layer["effects_first_class_right"][0], 4]
            assert layer["effects_agreement"] is not None
    page = (tmp_path / "site" / "layers" / "features.6" / "0.html").read_text()
    assert 'id="effects"' in page and "What it does" in page
    agreement = next(entry for entry in data["layers"] if entry["name"] == "features.6")["effects_agreement"]
    assert f"{agreement:.2f}</span> (8 pairs computed both ways)" in page  # the layer's agreement, on its pages
    assert "Spearman (pairs)" in (tmp_path / "site" / "about.html").read_text()
    assert all(not entry["neurons"][0]["effects"] for entry in data["layers"] if entry["name"] == "fc")


def test_copies_per_pass_double_until_slower_then_keep_the_fastest():
    from sitegen.engine.effects import _Copies

    copies = _Copies(8, 1000, 320)
    for step, per_copy in ((8, 4.0), (16, 3.0), (32, 2.5), (64, 2.7)):
        assert copies.next() == step
        copies.took(step, per_copy * step)
    assert copies.next() == 32  # 64 ran slower per copy than 32: the fastest is kept
    capped = _Copies(8, 1000, 24)  # no more copies than neurons
    for step in (8, 16, 24):
        assert capped.next() == step
        capped.took(step, 1.0 * step)
    assert capped.next() == 8  # all equally fast: the first of the fastest
    few = _Copies(8, 1000, 3)
    assert few.next() == 3
