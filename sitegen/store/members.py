"""The kinds of cache entries and the names of their members, defined once for the stages that write
them and the site that copies them.  A member per neuron is named by the neuron's number."""

from collections.abc import Callable

# kinds of entries: one folder of the cache each
ACTIVATIONS = "acts"
PREDICTIONS = "preds"
PHOTOS = "photo"
PICTURES = "vis"  # gradient pictures of the featured images
EDGES = "edges"
PATCHES = "patch"
OPTIMIZED = "opt"
IMAGE_CHECKS = "image"
STATISTICS = "stats"
SPECIFICITIES = "spec"
EXCITATIONS = "optcheck"
RECEPTIVE_FIELDS = "erf"
MAPS = "maps"  # activation maps of the featured images
TREES = "tree"  # a node of a featured image's tree: one entry per path
TOP_VIEWS = "topviews"  # per layer, each mapped neuron's top probe views, for its classes (a labelled probe set)
SANITY = "sanity"  # per layer, the randomization check of its methods
TREE_CHECK = "treecheck"  # per featured image and tree, the randomization check of its path pictures
EFFECTS = "effects"  # per layer, what its mapped neurons do to the classes over the probe set
SHEETS = "sheet"  # a sheet of the site's pictures, as the render composed it (site/sheets.py)
KINDS = (ACTIVATIONS, PREDICTIONS, PHOTOS, PICTURES, EDGES, PATCHES, OPTIMIZED, IMAGE_CHECKS, STATISTICS,
         SPECIFICITIES, EXCITATIONS, RECEPTIVE_FIELDS, MAPS, TREES, TOP_VIEWS, SANITY, TREE_CHECK, EFFECTS,
         SHEETS)

# activations of one featured view ([C]) or of a chunk of probe views ([n, C])
VALUES = "values.npy"
POSITIONS = "positions.npy"
# a featured view: the pixels the model sees, and the classifier's top predictions
PHOTO = "photo.jpg"
PROBS = "probs.npy"
CLASSES = "indices.npy"
# an image file: why it cannot be used (empty when it can)
PROBLEM = "problem.txt"
# statistics: one array per layer and featured view (specificity), per layer (the optimized images' check)
SPECIFICITY = "specificity.npy"
EXCITATION = "check.npy"
# a layer's effective receptive field: the side measured on each sampled patch
SIDES = "sides.npy"
# a layer's randomization check on a featured view: the neurons checked, and per method their correlations
NEURONS = "neurons.npy"
# a layer's effects: the candidate classes [K], each mapped neuron's first-order effect on each [K, U], the
# neurons ablated [A], the classes each was ablated for [A, E] and the logits they lost [A, E]
EFFECT_CLASSES = "classes.npy"
FIRST_ORDER = "first-order.npy"
ABLATED = "ablated.npy"
ABLATED_CLASSES = "ablated-classes.npy"
ABLATION = "ablation.npy"
# the featured views' activation maps: each channel's least value over the map (per layer and view)
MINIMA = "minima.npy"
# a tree node: its path picture cut to where it lies, the photo of the same box, [top, left, bottom, right,
# the shown picture's scale, the whole path picture's scale], its path weights to the layer below and, in a
# tree of parts, the part of its children each channel of the layer below is in (0 the strongest; -1: none)
NODE_PICTURE = "picture.webp"
NODE_PHOTO = "photo.webp"
NODE_FACTS = "facts.npy"
NODE_WEIGHTS = "weights.npy"
NODE_PARTS = "parts.npy"
# a sheet: its image
SHEET = "sheet.webp"
# a layer's mapped neurons' top probe views, best first ([neurons, M]; -1 where the probe set is short)
VIEWS = "views.npy"


def picture(neuron: int) -> str:
    """A gradient picture of the whole view (pictures entry: one per view, layer and method)."""
    return f"{neuron}.webp"


def picture_scales(neuron: int) -> str:
    """The scales of the whole picture and of its zoom (NaN where there is none), float32 [2]."""
    return f"{neuron}-scales.npy"


def picture_zoom(neuron: int) -> str:
    """That picture cut to the neuron's receptive field."""
    return f"{neuron}-box.webp"


def photo_zoom(neuron: int) -> str:
    """The photo cut to the same box; kept with the first method's pictures only."""
    return f"{neuron}-img.webp"


def patch_photo(box: tuple[int, int, int, int]) -> str:
    """A patch's photo: the probe view cut to a box (patches entry).  Named by the box, not the neuron: every
    neuron that looks at the same part of the view shows the same file (all of a flat layer's do)."""
    return "img_{}_{}_{}_{}.webp".format(*box)


def patch_picture(kind: str) -> Callable[[int], str]:
    """The member of a neuron's picture beside that photo, cut to the same box, of a kind (its layer's
    ``patches``, methods.PATCH_KINDS): a method's picture ("gb" for guided backprop's), or ("map") the
    neuron's activation map over the faded photo."""
    suffix = "gb" if kind == "guided" else kind
    return lambda neuron: f"{neuron}-{suffix}.webp"


def patch_scale(neuron: int, kind: str = "guided") -> str:
    """The scale of that picture, float32 [1]: the |gradient| shown at full contrast, or the map's maximum; one
    per kind, since the kinds share the entry."""
    return f"{neuron}-scale.npy" if kind == "guided" else f"{neuron}-{kind}-scale.npy"


def activation_map(neuron: int) -> str:
    """The neuron's activation map over the faded photo, its maximum marked (maps entry: one per view and
    layer)."""
    return f"{neuron}-map.webp"


def edges(neuron: int) -> str:
    """The neuron's edge weights to every neuron of the layer below, on one view (edges entry)."""
    return f"{neuron}.npy"


def optimized(neuron: int) -> str:
    """The neuron's image optimized from noise (optimized entry: one per layer)."""
    return f"{neuron}.png"


def sanity(method: str) -> str:
    return f"sanity-{method}.npy"


TREE_CHECK_VALUES = "correlations.npy"  # a tree's checked nodes' correlations


def array(name: str) -> str:
    """One array of a per-neuron statistic over the probe set (statistics entry: one per statistic and layer)."""
    return f"{name}.npy"


def arrays(entry: dict) -> dict:
    """A statistics entry's arrays, by name."""
    return {member.removesuffix(".npy"): value for member, value in entry.items()}


def expect(kind: str, channels: int | None = None, lower: int | None = None, rows: bool = False) -> dict:
    """What an entry's arrays must be, for readers to check (``Cache.get``'s ``expect``): ``channels`` of its
    layer, ``lower`` of the layer below (None: any), ``rows`` for a chunk of probe views' activations."""
    lead = (None,) if rows else ()
    return {
        ACTIVATIONS: {VALUES: ((*lead, channels), "f"), POSITIONS: ((*lead, channels), "i")},
        PREDICTIONS: {PROBS: ((None,), "f"), CLASSES: ((None,), "i")},
        PICTURES: {"*-scales.npy": ((2,), "f")},
        EDGES: {"*.npy": ((lower,), "f")},
        PATCHES: {"*-scale.npy": ((1,), "f")},
        MAPS: {MINIMA: ((channels,), "f")},
        STATISTICS: {"*.npy": ((channels, ...), "")},
        SPECIFICITIES: {SPECIFICITY: ((channels,), "f")},
        RECEPTIVE_FIELDS: {SIDES: ((None,), "i")},
        TREES: {NODE_FACTS: ((6,), "f"), NODE_WEIGHTS: ((lower,), "f"), NODE_PARTS: ((lower,), "i")},
        TOP_VIEWS: {VIEWS: ((channels, None), "i")},
        SANITY: {NEURONS: ((channels,), "i"), "sanity-*.npy": ((channels,), "f")},
        TREE_CHECK: {TREE_CHECK_VALUES: ((channels,), "f")},
        EFFECTS: {EFFECT_CLASSES: ((None,), "i"), FIRST_ORDER: ((None, channels), "f"), ABLATED: ((None,), "i"),
                  ABLATED_CLASSES: ((None, None), "i"), ABLATION: ((None, None), "f")},
    }.get(kind, {})
