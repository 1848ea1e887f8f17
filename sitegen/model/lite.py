"""EfficientNet-Lite from ``efficientnet-lite-pytorch``, with a forward that keeps every copy apart.

The package's forward reads the batch size from its input and flattens the pooled features with it.  That
is the same number only while every tensor of the pass has the input's batch: where copies are made at a
layer of one image's pass (``engine/effects.py``'s ablations: one copy per neuron zeroed), it folds the
copies into one row.  Here the pooled features are flattened per row instead, so what follows a layer can
run on copies of its output; every number the model computes is the package's.
"""

from __future__ import annotations

import torch
from efficientnet_lite_pytorch import EfficientNet


class EfficientNetLite(EfficientNet):
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._global_params.local_pooling:  # only a TFLite conversion sets it; none of the Lite models
            return super().forward(inputs)
        x = self._avg_pooling(self.extract_features(inputs)).flatten(1)
        return self._fc(self._dropout(x))
