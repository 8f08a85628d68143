"""Classifier heads of the JTP models. Both return probabilities, so callers never apply a sigmoid."""

from __future__ import annotations

import torch
from torch import nn


class SigmoidLinear(nn.Linear):
    """JTP-1 PILOT head: a plain ``Linear`` (keys ``head.weight``/``head.bias``) followed by a sigmoid."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(super().forward(x))


class GatedHead(nn.Module):
    """JTP-1.1 PILOT2 head: ``Linear(width, 2N)``; probability = sigmoid(first half) * sigmoid(second half)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.linear = nn.Linear(in_features, num_classes * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x)
        return torch.sigmoid(logits[..., : self.num_classes]) * torch.sigmoid(logits[..., self.num_classes :])
