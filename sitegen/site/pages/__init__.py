"""The page types: one module each, with ``build(atlas)`` returning its pages (and files made with them).

Adding a page type: a module here, its template, and a line in ``PAGE_TYPES``.
"""

from . import about, changes, classes, image, index, layer, manifest, markdown, neuron, search

PAGE_TYPES = (index, about, layer, neuron, image, changes, classes, markdown, search, manifest)
