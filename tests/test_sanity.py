"""The randomization check (DESIGN §2): each layer's figure per method against an independent computation of
its definition, with pictures from the one-at-a-time reference and a rank correlation written out here."""

import copy

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, write_images
from reference import reference_picture, reference_smoothgrad

from sitegen.config import load
from sitegen.engine.sanity import ranks, spearman
from sitegen.model.layers import own_block
from sitegen.model.registry import load_model
from sitegen.pipeline.runner import compute
from sitegen.pipeline.stages.sanity import SEED

CONFIG = TINY_MODEL.replace('weights = "none"', 'weights = "trained.pth"') + """[layers]
use = ["features.3", "features.6", "fc"]
methods = { "features.6" = ["guided", "gradient"], fc = ["deconv", "smoothgrad"] }
[images]
featured = ["imgs/img0.png", "imgs/img1.png"]
probe = ["imgs"]
[compute]
top_k = 2
"""


def spearman_by_hand(a, b):
    """Pearson's correlation of the ranks, ties given the mean of the ranks they span."""
    def rank(values):
        order = sorted(range(len(values)), key=lambda k: values[k])
        out, start = [0.0] * len(values), 0
        while start < len(order):
            end = start
            while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
                end += 1
            for k in order[start:end + 1]:
                out[k] = (start + end) / 2
            start = end + 1
        return np.array(out)
    x, y = rank(list(a)), rank(list(b))
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def test_ranks_share_ties_and_spearman_is_pearson_of_ranks():
    values = torch.tensor([3.0, 1.0, 3.0, 0.0, 3.0])
    assert ranks(values).tolist() == [3.0, 1.0, 3.0, 0.0, 3.0]
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 50).astype(float), rng.normal(size=50)  # many ties
    assert spearman(torch.tensor(a), torch.tensor(b)) == pytest.approx(spearman_by_hand(a, b), abs=1e-12)
    assert np.isnan(spearman(torch.zeros(5), torch.arange(5.0)))  # a constant picture has no ranks to compare


def test_own_block_is_what_a_layer_computes_from_the_one_below():
    loaded = load_model("tinynet:build", "none")
    assert own_block(loaded, "features.3", None) == ["features.0", "features.3"]
    assert own_block(loaded, "features.6", "features.3") == ["features.6"]
    assert own_block(loaded, "fc", "features.6") == ["fc"]
    resnet = load_model("resnet18", "none")
    assert own_block(resnet, "layer2", "layer1") == [
        "layer2.0.conv1", "layer2.0.bn1", "layer2.0.conv2", "layer2.0.bn2", "layer2.0.downsample.0",
        "layer2.0.downsample.1", "layer2.1.conv1", "layer2.1.bn1", "layer2.1.conv2", "layer2.1.bn2"]


def test_the_atlas_s_figures_follow_the_definition(tmp_path):
    write_images(tmp_path / "imgs", 4)
    torch.manual_seed(7)  # weights that are not tinynet's own random initialisation
    model = load_model("tinynet:build", "none").module
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    torch.save(model.state_dict(), tmp_path / "trained.pth")
    (tmp_path / "atlas.toml").write_text(CONFIG)
    manifest, _ = compute(load(tmp_path / "atlas.toml"), tmp_path / "cache", device="cpu", quiet=True)
    from test_build import model_input

    images = [model_input(tmp_path, name)[0] for name in ("img0.png", "img1.png")]
    blocks = {"features.3": ["features.0", "features.3"], "features.6": ["features.6"], "fc": ["fc"]}
    for layer in manifest.layers:
        random = copy.deepcopy(model)
        torch.manual_seed(SEED)
        for path in blocks[layer.name]:
            dict(random.named_modules())[path].reset_parameters()
        module = dict(model.named_modules())[layer.path]
        for method, figure in layer.sanity.items():
            values = []
            for image in images:
                got = {}
                handle = module.register_forward_hook(lambda m, i, o, got=got: got.__setitem__("o", o.clone()))
                with torch.no_grad():
                    model(image[None])
                handle.remove()
                for neuron in layer.mapped:  # every neuron: a tiny layer has fewer than 16
                    flat = got["o"][0, neuron].reshape(-1)
                    position = int(torch.nonzero(flat == flat.max())[0])
                    if method == "smoothgrad":  # fc's units have one position: each model's is the trained one's
                        trained, other = (reference_smoothgrad(m, image[None], layer.path, [neuron], 16, 0.15, 0)[0, 0]
                                          for m in (model, random))
                    else:
                        trained, other = (reference_picture(m, image, layer.path, neuron, position, method)
                                          for m in (model, random))
                    top, left, bottom, right = box(layer, position, image.shape[-1])
                    a = trained.abs().sum(0)[top:bottom + 1, left:right + 1].reshape(-1).tolist()
                    b = other.abs().sum(0)[top:bottom + 1, left:right + 1].reshape(-1).tolist()
                    if len(set(a)) > 1:  # a trained picture that is the same everywhere has nothing to compare
                        values.append(spearman_by_hand(a, b) if len(set(b)) > 1 else 0.0)
            assert values, (layer.name, method)
            assert figure == pytest.approx(float(np.median(values)), abs=1e-5), (layer.name, method)
    assert manifest.layer("features.3").sanity.keys() == {"guided", "deconv", "gradient"}
    # fc shows deconvnet and SmoothGrad; guided backprop, its patches' method, is checked too
    assert manifest.layer("fc").sanity.keys() == {"guided", "deconv", "smoothgrad"}
    assert manifest.layer("features.6").effective is not None  # a zoomed layer: its box is not the whole image


def box(layer, position, size):
    """The box the neuron's zoom shows: its layer's effective receptive field, a square centred on the
    centre of its theoretical field and moved into the image (the whole image where there is none)."""
    side = layer.effective
    if side is None:
        return 0, 0, size - 1, size - 1
    geometry, (i, j) = layer.geometry, divmod(position, layer.width)
    centre = [(geometry["lo"][a] + geometry["hi"][a]) // 2 + (i, j)[a] * geometry["jump"][a] for a in (0, 1)]
    top, left = (min(max(c - side // 2, 0), size - side) for c in centre)
    return top, left, top + side - 1, left + side - 1


def test_reinitialising_uses_the_cpu_s_own_generator_and_leaves_every_random_state_alone():
    from sitegen.engine.sanity import reinitialised

    model = load_model("tinynet:build", "none").module
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    other = reinitialised(model, ["features.6", "fc"], SEED)
    assert torch.equal(torch.random.get_rng_state(), before)
    by_hand = copy.deepcopy(model)
    generator_state = torch.random.get_rng_state()
    torch.random.default_generator.manual_seed(SEED)
    by_hand.features[6].reset_parameters()
    by_hand.fc.reset_parameters()
    torch.random.set_rng_state(generator_state)
    for (name, mine), (_, theirs) in zip(other.state_dict().items(), by_hand.state_dict().items()):
        assert torch.equal(mine, theirs), name
    assert not torch.equal(other.fc.weight, model.fc.weight) and torch.equal(other.features[0].weight,
                                                                             model.features[0].weight)


def test_a_picture_that_the_re_initialised_model_makes_zero_counts_zero():
    from sitegen.engine.sanity import agreement

    trained = torch.rand(2, 3, 8, 8)
    random = torch.rand(2, 3, 8, 8)
    random[1] = 0  # the neuron is dead in the re-initialised model: all it showed is gone
    trained_zero = torch.zeros(1, 3, 8, 8)
    got = agreement(trained, random, [(0, 0, 7, 7), (0, 0, 7, 7)])
    assert -1 <= got[0] <= 1 and got[1] == 0.0
    assert np.isnan(agreement(trained_zero, random[:1], [(0, 0, 7, 7)])[0])  # nothing to compare


def walk(node, path):
    """Each node of a tree with its path, [(layer, neuron or channels)] from the root, and its box."""
    here = path + [(node.layer, [edge.neuron for edge in node.group] if node.group else node.neuron)]
    yield here, node.box
    for child in node.children:
        yield from walk(child, here)


def test_the_trees_check_follows_the_definition(tmp_path, monkeypatch):
    """Every node checked (CHECKED raised): a tree's figure is the median over its nodes of the Spearman
    correlation, over the node's box, of its path picture under the trained model and with the root's own
    block re-initialised (the root at the trained model's position), each picture from the one-at-a-time path
    reference.  Two trees per image: from the class (fc) and from features.6's most active channel."""
    from reference import reference_visualize_path

    monkeypatch.setattr("sitegen.pipeline.stages.sanity.CHECKED", 10_000)
    write_images(tmp_path / "imgs", 4)
    torch.manual_seed(7)
    model = load_model("tinynet:build", "none").module
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    torch.save(model.state_dict(), tmp_path / "trained.pth")
    (tmp_path / "atlas.toml").write_text(CONFIG + '[trees]\nlayers = ["features.6"]\nroots = 1\n')
    manifest, _ = compute(load(tmp_path / "atlas.toml"), tmp_path / "cache", device="cpu", quiet=True)
    from test_build import model_input

    blocks = {"fc": ["fc"], "features.6": ["features.6"]}  # each root layer's own block
    figures = []
    for featured, name in zip(manifest.featured, ("img0.png", "img1.png")):
        image = model_input(tmp_path, name)
        assert [root.layer for root in featured.trees] == ["fc", "features.6"]
        for root, (figure, counted) in zip(featured.trees, featured.tree_checks):
            random = copy.deepcopy(model)
            torch.manual_seed(SEED)
            for path in blocks[root.layer]:
                dict(random.named_modules())[path].reset_parameters()
            got = {}
            handle = dict(model.named_modules())[root.layer].register_forward_hook(
                lambda m, i, o, got=got: got.__setitem__("o", o))
            with torch.no_grad():
                model(image)
            handle.remove()
            flat = got["o"][0, root.neuron].reshape(-1)
            position = int(torch.nonzero(flat == flat.max())[0])  # the trained model's
            nodes = list(walk(root, []))
            values = []
            for path, (top, left, bottom, right) in nodes:
                trained, other = (reference_visualize_path(m, image, path, "guided", position)[0]
                                  for m in (model, random))
                a = trained.abs().sum(0)[top:bottom + 1, left:right + 1].reshape(-1).tolist()
                b = other.abs().sum(0)[top:bottom + 1, left:right + 1].reshape(-1).tolist()
                if len(set(a)) > 1:
                    values.append(spearman_by_hand(a, b) if len(set(b)) > 1 else 0.0)
            assert len(nodes) > 3 and values
            assert counted == len(values)
            assert figure == pytest.approx(float(np.median(values)), abs=1e-5)
            figures.append(figure)
    assert min(figures) < 0.9  # a block that matters: features.6's own weights change its trees' pictures
