"""sitegen: a neuron atlas of a convolutional network, as a static site."""

__version__ = "0.2.0"

__all__ = ["__version__", "edges", "effects", "optimize", "path_edges", "visualize", "visualize_paths"]


def __getattr__(name):
    # The Python API imports torch lazily, so the site half stays torch-free.
    if name in ("visualize", "edges", "effects", "optimize", "visualize_paths", "path_edges"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
