"""A small CNN whose first channel is set by hand to detect bright diagonal lines, addressed as
``diagnet:build``: a neuron whose favourite images are known in advance."""

import torch
from torch import nn


class DiagNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 5, padding=2)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


def build() -> nn.Module:
    torch.manual_seed(0)
    model = DiagNet()
    with torch.no_grad():
        diagonal = torch.full((5, 5), -0.25) + 1.25 * torch.eye(5)  # zero mean: silent on flat colour
        model.conv.weight[0] = diagonal.expand(3, 5, 5) / 3
        model.conv.bias[0] = 0.0
        model.conv.weight[1:] *= 0.3
    return model
