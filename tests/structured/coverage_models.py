"""Tiny models for the tracer's less common paths: layers that compute their weights in
the forward (weight standardisation, weight / spectral norm, masks, LoRA), sliding
windows (``nn.Unfold`` / ``nn.Fold``) and recurrent layers. Importable from a fresh
interpreter (the reload round trip runs in a subprocess)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

from prunekit.masks.parametrize import apply_mask


class LoRALinear(nn.Module):
    """``weight = W + B @ A * scale``, merged in the forward (LoRA-style wrapper)."""

    def __init__(self, cin: int, cout: int, rank: int = 2, scale: float = 0.5) -> None:
        super().__init__()
        self.base = nn.Linear(cin, cout)
        self.lora_a = nn.Parameter(torch.randn(rank, cin) * 0.3)
        self.lora_b = nn.Parameter(torch.randn(cout, rank) * 0.3)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.base.weight + (self.lora_b @ self.lora_a) * self.scale
        return nn.functional.linear(x, weight, self.base.bias)


def _convnet(conv) -> nn.Module:
    return nn.Sequential(conv(3, 8), nn.ReLU(), conv(8, 12), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 4))


def std_conv() -> nn.Module:
    from timm.layers import StdConv2d

    return _convnet(lambda i, o: StdConv2d(i, o, 3, padding=1, bias=True))


def scaled_std_conv() -> nn.Module:
    from timm.layers import ScaledStdConv2d

    return _convnet(lambda i, o: ScaledStdConv2d(i, o, 3, padding=1))


def weight_norm() -> nn.Module:
    return _convnet(lambda i, o: parametrizations.weight_norm(nn.Conv2d(i, o, 3, padding=1)))


def legacy_weight_norm() -> nn.Module:
    """``torch.nn.utils.weight_norm``: a forward pre-hook sets ``weight`` from g and v."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated, still in models
        return _convnet(lambda i, o: nn.utils.weight_norm(nn.Conv2d(i, o, 3, padding=1)))


def spectral_norm() -> nn.Module:
    return nn.Sequential(parametrizations.spectral_norm(nn.Linear(6, 10)), nn.ReLU(),
                         parametrizations.spectral_norm(nn.Linear(10, 8)), nn.ReLU(),
                         nn.Linear(8, 3))


def masked() -> nn.Module:
    """prunekit's own mask parametrization (weight = original * mask) on every conv."""
    model = _convnet(lambda i, o: nn.Conv2d(i, o, 3, padding=1))
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            apply_mask(m, "weight", torch.rand(m.weight.shape, generator=gen) > 0.3)
    return model


def lora() -> nn.Module:
    return nn.Sequential(LoRALinear(6, 10), nn.ReLU(), LoRALinear(10, 8), nn.ReLU(),
                         nn.Linear(8, 3))


class Recurrent(nn.Module):
    """A projection, a 2-layer bidirectional recurrent layer and a head."""

    def __init__(self, kind: type[nn.RNNBase]) -> None:
        super().__init__()
        self.embed = nn.Linear(5, 8)
        self.rnn = kind(8, 6, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(torch.relu(self.embed(x)))
        return self.head(y)


class Unfolded(nn.Module):
    """conv -> ``nn.Unfold`` (each channel becomes k*k rows) -> linear over those rows."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.unfold = nn.Unfold(2, stride=2)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = self.unfold(torch.relu(self.conv(x)))  # (B, 8 * 4, L)
        return self.head(cols.transpose(1, 2)).mean(1)


class Folded(nn.Module):
    """conv with C * k * k outputs -> ``nn.Fold`` (sums them into C channels) -> conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8 * 4, 1)
        self.fold = nn.Fold((8, 8), 2, stride=2)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = torch.relu(self.conv(x)).flatten(2)  # (B, 32, 16) from a 4 x 4 map
        return self.head(self.fold(cols)).mean((2, 3))


# name -> (factory, example input shape)
MODELS = {
    "std_conv": (std_conv, (2, 3, 8, 8)),
    "scaled_std_conv": (scaled_std_conv, (2, 3, 8, 8)),
    "weight_norm": (weight_norm, (2, 3, 8, 8)),
    "legacy_weight_norm": (legacy_weight_norm, (2, 3, 8, 8)),
    "spectral_norm": (lambda: spectral_norm().eval(), (2, 6)),
    "masked": (masked, (2, 3, 8, 8)),
    "lora": (lora, (2, 6)),
    "lstm": (lambda: Recurrent(nn.LSTM), (2, 4, 5)),
    "gru": (lambda: Recurrent(nn.GRU), (2, 4, 5)),
    "rnn": (lambda: Recurrent(nn.RNN), (2, 4, 5)),
    "unfold": (Unfolded, (2, 3, 8, 8)),
    "fold": (Folded, (2, 3, 4, 4)),
}
