import pytest
import torch

from sitegen.errors import SitegenError
from sitegen.model.layers import describe_layers, resolve_layer
from sitegen.model.registry import load_model


def test_state_dict_file_loads_with_the_same_fingerprint(tmp_path):
    built = load_model("tinynet:build", "none")
    path = tmp_path / "tiny.pth"
    torch.save(built.module.state_dict(), path)
    loaded = load_model("tinynet:build", str(path))
    assert loaded.fingerprint == built.fingerprint
    torch.save({"state_dict": built.module.state_dict()}, tmp_path / "wrapped.pth")
    assert load_model("tinynet:build", str(tmp_path / "wrapped.pth")).fingerprint == built.fingerprint


def test_a_mismatched_weights_file_names_the_keys(tmp_path):
    state = load_model("tinynet:build", "none").module.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["fc.bias"]
    state["fc.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(SitegenError) as info:
        load_model("tinynet:build", str(tmp_path / "bad.pth"))
    message = str(info.value)
    assert "missing: fc.bias" in message and "unexpected: extra.weight" in message
    assert "wrong shape: fc.weight" in message


def test_a_weights_file_with_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this should never run",))

    torch.save({"x": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(SitegenError, match="could not be read as a state_dict"):
        load_model("tinynet:build", str(tmp_path / "evil.pth"))


def test_unknown_models_and_layers_suggest_names():
    with pytest.raises(SitegenError, match="Did you mean 'alexnet'"):
        load_model("alexnt", "none")
    loaded = load_model("alexnet", "none")
    with pytest.raises(SitegenError, match="Did you mean 'conv5'"):
        resolve_layer(loaded, "conv55")
    assert resolve_layer(loaded, "conv5") == ("conv5", "features.11")
    assert resolve_layer(loaded, "features.11") == ("conv5", "features.11")


def test_describe_layers_gives_shapes_and_call_counts():
    infos = {i.path: i for i in describe_layers(load_model("resnet18", "none"))}
    assert infos["layer2"].shape == (128, 28, 28)
    assert infos["layer1.0.relu"].calls == 2  # a ReLU module used twice: not addressable as a layer
    assert infos["fc"].shape == (1000,)
