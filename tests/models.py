"""Small models built in code for the tests."""

from __future__ import annotations

import copy

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Two conv blocks, a conv followed by an in-place ReLU, global pooling, a linear head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 5, inplace: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.conv3 = nn.Conv2d(12, 16, 3, padding=1)
        self.relu3 = nn.ReLU(inplace=inplace)
        self.dropout = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The eval-mode forward pass written out by hand, returning every named intermediate."""
        out: dict[str, torch.Tensor] = {}
        out["conv1"] = self.conv1(x)
        out["bn1"] = self.bn1(out["conv1"])
        out["relu1"] = torch.relu(out["bn1"])
        out["conv2"] = self.conv2(out["relu1"])
        out["relu2"] = torch.relu(out["conv2"])
        out["conv3"] = self.conv3(out["relu2"])
        out["relu3"] = torch.relu(out["conv3"])
        pooled = self.pool(self.dropout(out["relu3"])).flatten(1)
        out["fc"] = self.fc(pooled)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.conv2(x))
        x = self.relu3(self.conv3(x))
        return self.fc(self.pool(self.dropout(x)).flatten(1))


class FunctionalReluCNN(nn.Module):
    """Uses torch.relu inside forward instead of ReLU modules."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


def without_inplace(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose in-place activations are made out-of-place."""
    clone = copy.deepcopy(model)
    for module in clone.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    return clone


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialise ``model`` deterministically, including BatchNorm statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point():
                continue
            if "running_var" in name:
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif "running_mean" in name:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif tensor.ndim > 1:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            else:
                tensor.copy_(
                    torch.randn(tensor.shape, generator=gen) * 0.1
                    + (1.0 if "weight" in name else 0.0)
                )
    return model.eval()


class TinyCNN3d(nn.Module):
    """A small Conv3d classifier with an in-place ReLU after a BatchNorm."""

    def __init__(self, num_classes: int = 3, inplace: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(2, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(6)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv3d(6, 8, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(8, num_classes)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The eval-mode forward pass written out by hand."""
        out: dict[str, torch.Tensor] = {}
        out["conv1"] = self.conv1(x)
        out["bn1"] = self.bn1(out["conv1"])
        out["relu1"] = torch.relu(out["bn1"])
        out["conv2"] = self.conv2(out["relu1"])
        out["relu2"] = torch.relu(out["conv2"])
        out["fc"] = self.fc(self.pool(out["relu2"]).flatten(1))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))
