"""Small classifiers: a conv net sized to the input, and LeNet-300-100."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.errors import ConfigError


class SmallConvNet(nn.Module):
    """Conv(3x3)-BN-ReLU blocks with max-pooling, then a two-layer classifier head.

    Args:
        in_channels: input channels.
        num_classes: output classes.
        image_size: input height/width (square); pooling stops at <= 7 pixels.
        widths: channels of the conv blocks.
        hidden: width of the hidden linear layer.

    Example:
        >>> SmallConvNet(1, 10, 8)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        widths: tuple[int, ...] = (32, 64),
        hidden: int = 128,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size, ch = image_size, in_channels
        for w in widths:
            layers += [nn.Conv2d(ch, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if size > 7:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            ch = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(ch * size * size, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet300100(nn.Module):
    """The fully connected LeNet-300-100 (784-300-100-10 for 28x28 inputs).

    Example:
        >>> LeNet300100(784, 10)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, 300),
            nn.ReLU(),
            nn.Linear(300, 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MODELS = ("convnet", "lenet300100")


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build ``"convnet"`` or ``"lenet300100"`` for inputs ``(C, H, W)``.

    Example:
        >>> type(build_model("lenet300100", (1, 8, 8), 10)).__name__
        'LeNet300100'
    """
    c, h, w = input_shape
    if name == "convnet":
        return SmallConvNet(c, num_classes, h)
    if name == "lenet300100":
        return LeNet300100(c * h * w, num_classes)
    raise ConfigError(f"unknown model {name!r}; choose one of {list(MODELS)}")
