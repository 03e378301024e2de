"""A small torch model for tests/test_ml_torch.py, in a module of its own so a fresh process can import it."""

from __future__ import annotations

import torch


class SmallNet(torch.nn.Module):
    """Linear, batch norm (running statistics, a num_batches_tracked buffer), a non-persistent buffer."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(8, width)
        self.bn = torch.nn.BatchNorm1d(width)
        self.fc2 = torch.nn.Linear(width, 3)
        self.register_buffer("scale", torch.tensor(2.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.fc1(x)))) * self.scale


class WideNet(SmallNet):
    """150 KiB of tensors."""

    def __init__(self) -> None:
        super().__init__(width=2048)


class NeedsArguments(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(width, width)


def trained(seed: int = 0) -> SmallNet:
    """A SmallNet after a few optimizer steps, in eval mode, its first layer frozen."""
    torch.manual_seed(seed)
    model = SmallNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        x = torch.randn(32, 8)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.fc1.weight.requires_grad_(False)
    return model
