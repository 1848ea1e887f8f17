"""tinynet with finite weights whose first block gives NaN in channel 0, addressed as ``nannet:build``: a model
that computes values that are not numbers (a log of a negative) without any NaN in its weights; and
``nannet:masked``, tinynet with a buffer of -inf that it adds where a mask says (as attention masks do)."""

import torch
from tinynet import TinyNet
from torch import nn


class LogOfNegative(nn.Module):
    def forward(self, x):
        return torch.cat([torch.log(-1.0 - x[:, :1]), x[:, 1:]], dim=1)  # log of a negative: NaN


def build() -> nn.Module:
    torch.manual_seed(0)
    model = TinyNet()
    model.features.insert(2, LogOfNegative())  # after the first ReLU: features.2, channel 0 (and all above)
    return model


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        mask = torch.zeros(1, 6, 1, 1)
        mask[0, 5] = float("-inf")  # channel 5 masked out
        self.register_buffer("mask", mask)

    def forward(self, x):
        return x.masked_fill(torch.isinf(self.mask), 0.0)


def masked() -> nn.Module:
    torch.manual_seed(0)
    model = TinyNet()
    model.features.insert(2, Masked())
    return model
