"""Growing object-category classifier (the conditioners' class heads; grows at each incremental step).

When an incremental step brings categories the model has not seen, every head grows to the new class
count: the rows (weight and bias) of the classes already learned are kept bit-identical and the new rows
are initialised like a fresh ``nn.Linear``. Growing replaces the ``weight``/``bias`` parameters, so an
optimizer built before :meth:`GrowingClassifier.grow` must be rebuilt after it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GrowingClassifier"]


class GrowingClassifier(nn.Module):
    """Linear class head ``(B, in_features) -> (B, num_classes)`` that can add classes.

    Args:
        in_features: Input features.
        num_classes: Initial number of classes (at least 1).
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be positive, got {in_features}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.in_features = in_features
        self.weight = nn.Parameter(self._new_weight(num_classes))
        self.bias = nn.Parameter(self._new_bias(num_classes))

    def _new_weight(self, rows: int, like: Tensor | None = None) -> Tensor:
        """``nn.Linear``'s init: kaiming-uniform with ``a = sqrt(5)``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        weight = torch.empty(rows, self.in_features, dtype=None if like is None else like.dtype)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        return weight if like is None else weight.to(like.device)

    def _new_bias(self, rows: int, like: Tensor | None = None) -> Tensor:
        bound = 1.0 / math.sqrt(self.in_features)
        bias = torch.empty(rows, dtype=None if like is None else like.dtype).uniform_(-bound, bound)
        return bias if like is None else bias.to(like.device)

    @property
    def num_classes(self) -> int:
        """Current number of classes ``K``."""
        return self.weight.shape[0]

    def grow(self, num_classes: int) -> None:
        """Grow to ``num_classes`` outputs; rows ``[0, K)`` stay bit-identical, new rows are fresh.

        Raises:
            ValueError: ``num_classes`` is smaller than the current class count.
        """
        old = self.num_classes
        if num_classes < old:
            raise ValueError(f"a classifier cannot shrink: it has {old} classes, asked to grow to {num_classes}")
        if num_classes == old:
            return
        extra = num_classes - old
        with torch.no_grad():
            weight = torch.cat([self.weight.detach(), self._new_weight(extra, like=self.weight)])
            bias = torch.cat([self.bias.detach(), self._new_bias(extra, like=self.bias)])
        self.weight = nn.Parameter(weight, requires_grad=self.weight.requires_grad)
        self.bias = nn.Parameter(bias, requires_grad=self.bias.requires_grad)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits.

        Args:
            x: Features ``(B, in_features)``.

        Returns:
            Logits ``(B, num_classes)``.
        """
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        """Sizes shown by ``print(module)``."""
        return f"in_features={self.in_features}, num_classes={self.num_classes}"
