"""A manifest written by hand, for testing the site half without computing anything (and without torch).

Two layers: ``conv`` (4 channels of 2 x 2, receptive field 3 px) and the logits ``fc`` of three classes,
two of them mapped; one featured image, three probe views, top 2 patches.
"""

from sitegen.store.manifest import (
    Edge,
    Excitation,
    FeaturedRecord,
    LayerRecord,
    Manifest,
    ModelRecord,
    NeuronRecord,
    OptimizedRecord,
    PatchRecord,
    Prediction,
    ProbeItem,
    ProbeRecord,
    Seen,
    TreeNode,
)

CATEGORIES = ("cat", "dog", "bird")


def histogram(low: float, high: float) -> dict:
    return {"mean": (low + high) / 2, "firing": 0.5, "low": low, "high": high, "counts": [1, 0, 2]}


def patches(neuron: int, values: list[float]) -> tuple[PatchRecord, ...]:
    views = [(neuron + rank) % 3 for rank in range(len(values))]
    return tuple(PatchRecord(item=view, value=value, box=(0, 0, 2, 2), key=f"patch-{view}", scale=0.5, rank=rank + 1)
                 for rank, (view, value) in enumerate(zip(views, values)))


def conv(neuron: int) -> NeuronRecord:
    return NeuronRecord(
        neuron=neuron, top=patches(neuron, [2.0 + neuron, 1.0]),
        levels=(PatchRecord(item=2, value=0.5, box=(0, 0, 2, 2), key="patch-2", scale=0.25, percentile=99.0,
                           place=3),),
        featured={"cat": Seen(value=[0.5, 3.0, 1.5, -1.0][neuron], position=neuron % 4,
                              scales={"guided": (0.1, 0.2), "gradient": (0.3, 0.4)}, specificity=0.25 * neuron)},
        children={}, stats={"histogram": histogram(-1.0, 2.0 + neuron)})


def logit(neuron: int, children: dict) -> NeuronRecord:
    return NeuronRecord(
        neuron=neuron, top=patches(neuron, [9.0, 8.0]), levels=(), children=children,
        featured={"cat": Seen(value={0: 7.0, 2: 1.0}[neuron], position=0,
                              scales={"guided": (0.5, None), "gradient": (0.6, None)}, specificity=None)},
        stats={"histogram": histogram(0.0, 9.0)},
        excitation=Excitation(own=20.0 + neuron, other=5.0 + neuron, probe=9.0))


def manifest() -> Manifest:
    layers = (
        LayerRecord(name="conv", path="features.0", shape=(4, 2, 2), selection="", lower=None,
                    methods=("guided", "gradient"),
                    geometry={"jump": [2, 2], "lo": [-1, -1], "hi": [1, 1], "whole": False}, rf_size=(3, 3),
                    effective=3, signed=True, neurons=tuple(conv(n) for n in range(4)),
                    sanity={"guided": 0.95, "gradient": 0.31}),
        LayerRecord(name="fc", path="classifier", shape=(3,), selection="the top 1 predicted classes of each "
                    "featured image", lower="conv", methods=("guided", "gradient"), geometry={"whole": True},
                    rf_size=None, effective=None, signed=False, sanity={"guided": 0.99, "gradient": None},
                    neurons=(logit(0, {"cat": (Edge(2, 0.5), Edge(1, 0.25)), "dataset": (Edge(1, 0.3, 2),)}),
                             logit(2, {"cat": (Edge(1, 0.4),), "dataset": (Edge(1, 0.2, 1),)})),
                    optimized=OptimizedRecord(key="opt-fc", recipe={"steps": 4, "size": 32, "lr": 0.05, "pad": 2,
                                                                    "jitter": 1, "scale": 0.1, "rotate": 5.0,
                                                                    "decay": 1.0},
                                              seed=0, beats_probe=1.0, specific=0.5)),
    )
    featured = (FeaturedRecord(slug="cat", name="photos/cat.png", photo="photo-cat",
                               predictions=(Prediction(0, "cat", 0.7), Prediction(1, "dog", 0.2)),
                               pictures={layer.name: {m: f"vis-{layer.name}-{m}" for m in ("guided", "gradient")}
                                         for layer in layers}, maps={"conv": "maps-conv"},
                               trees=(TreeNode("fc", 0, "tree-0", (0, 0, 3, 3), 1.0, 1.0, 7.0, None, None, (
                                   TreeNode("conv", 2, "tree-0-2", (1, 1, 2, 2), 0.5, 0.4, 1.5, 0.75, 0.6),
                                   TreeNode("conv", 3, "tree-0-3", (0, 2, 1, 3), 0.2, 0.1, -1.0, 0.5, 0.4))),)),)
    return Manifest(
        version="0.0.test", title="Hand-made <atlas>", config="atlas.toml",
        model=ModelRecord(name="handmade", weights="none", fingerprint="handmade:0123", license="",
                          preprocess={"resize": 4, "crop": 4}, preprocess_text="as it is", categories=CATEGORIES),
        methods=("guided", "gradient"), top_k=2, children=8, layers=layers, featured=featured,
        probe=ProbeRecord(count=3, files=2, hash="abcd",
                          items=(ProbeItem("photos/cat.png", "whole image"), ProbeItem("photos/dog.png", "whole image"),
                                 ProbeItem("photos/dog.png", "mirrored"))))
