"""Per-class low-rank adapters and the prototype router that picks one (``model.class_adapter_rank``).

With adapters, a linear layer ``y = W x + b`` of the reconstruction networks becomes
``y = W x + b + U_k D_k x`` for an input of class ``k``: ``D_k`` ``(r, in)`` and ``U_k`` ``(out, r)`` belong
to class ``k`` alone (``U_k`` starts at zero, so a new class starts from the shared network). The
base step trains everything; an incremental step trains only its new classes' adapters, so what
the earlier classes use is never changed (parameter isolation instead of a pull toward old weights).

Which adapter a test image uses is decided without labels by :class:`PrototypeRouter`: the class
whose mean pooled training feature (one vector per class, fitted when the class is learned) is
nearest in cosine similarity. Training batches use their labels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ClassLowRankAdapter", "PrototypeRouter", "train_only_class_adapters"]


class ClassLowRankAdapter(nn.Module):
    """The per-class update ``U_k D_k x`` of one linear layer (added to the layer's own output).

    Args:
        in_features: input width of the adapted layer.
        out_features: output width of the adapted layer.
        rank: ``r``.
        num_classes: classes it starts with.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, num_classes: int) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        self.in_features, self.out_features, self.rank = int(in_features), int(out_features), int(rank)
        self.down = nn.ParameterList()
        self.up = nn.ParameterList()
        self.grow(num_classes)

    @property
    def num_classes(self) -> int:
        """Classes with an adapter."""
        return len(self.down)

    def grow(self, num_classes: int) -> None:
        """Add adapters up to ``num_classes``: ``D`` like ``nn.Linear``'s init, ``U`` zero."""
        device = self.down[0].device if len(self.down) else None
        for _ in range(self.num_classes, num_classes):
            down = torch.empty(self.rank, self.in_features, device=device)
            nn.init.kaiming_uniform_(down, a=math.sqrt(5))
            self.down.append(nn.Parameter(down))
            self.up.append(nn.Parameter(torch.zeros(self.out_features, self.rank, device=device)))

    def class_parameters(self, class_index: int) -> list[nn.Parameter]:
        """The two parameters of one class."""
        return [self.down[class_index], self.up[class_index]]

    def forward(self, x: Tensor, class_ids: Tensor) -> Tensor:
        """``(B, L, in)`` tokens and ``(B,)`` class indices -> ``(B, L, out)`` update."""
        # Selected by a one-hot product, not by indexing: its backward is a matmul, so training is bit-reproducible
        # on CPU (the backward of indexing with repeated classes accumulates in a thread-dependent order).
        onehot = F.one_hot(class_ids, self.num_classes).to(x.dtype)  # (B, K)
        down = (onehot @ torch.stack(list(self.down)).flatten(1)).view(-1, self.rank, self.in_features)  # (B, r, in)
        up = (onehot @ torch.stack(list(self.up)).flatten(1)).view(-1, self.out_features, self.rank)  # (B, out, r)
        return torch.bmm(torch.bmm(x, down.transpose(1, 2)), up.transpose(1, 2))  # (B, L, r) -> (B, L, out)


class PrototypeRouter(nn.Module):
    """Nearest class prototype (cosine) of the globally pooled clean features.

    Args:
        channels: total channels of the concatenated modalities' features.
        num_classes: classes it starts with (prototypes are fitted later, :meth:`set_prototype`).
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("prototypes", torch.zeros(num_classes, channels))
        self.register_buffer("fitted", torch.zeros(num_classes, dtype=torch.bool))

    def grow(self, num_classes: int) -> None:
        """Room for ``num_classes`` prototypes (new ones unfitted)."""
        extra = num_classes - self.prototypes.shape[0]
        if extra > 0:
            self.prototypes = torch.cat([self.prototypes, self.prototypes.new_zeros(extra, self.prototypes.shape[1])])
            self.fitted = torch.cat([self.fitted, self.fitted.new_zeros(extra)])

    @staticmethod
    def pooled(features: Tensor) -> Tensor:
        """``(B, C, h, w)`` -> ``(B, C)`` spatial mean."""
        return features.mean(dim=(2, 3))

    def set_prototype(self, class_index: int, mean_feature: Tensor) -> None:
        """Store class ``class_index``'s mean pooled training feature ``(C,)``."""
        self.prototypes[class_index] = mean_feature.to(self.prototypes)
        self.fitted[class_index] = True

    def forward(self, features: Tensor) -> Tensor:
        """``(B, C, h, w)`` clean features -> ``(B,)`` index of the nearest fitted prototype."""
        if not bool(self.fitted.any()):
            raise RuntimeError("the class router has no fitted prototype yet")
        similarity = F.normalize(self.pooled(features), dim=1) @ F.normalize(self.prototypes, dim=1).T
        return similarity.masked_fill(~self.fitted, float("-inf")).argmax(dim=1)


def train_only_class_adapters(model: nn.Module, class_indices: list[int]) -> int:
    """Freeze every parameter of ``model`` except the adapters of ``class_indices``; returns the trainable count.

    What an incremental step with class adapters trains: the shared network, the class heads and the
    earlier classes' adapters stay exactly as they are.
    """
    for param in model.parameters():
        param.requires_grad_(False)
    trainable = 0
    for module in model.modules():
        if isinstance(module, ClassLowRankAdapter):
            for index in class_indices:
                for param in module.class_parameters(index):
                    param.requires_grad_(True)
                    trainable += param.numel()
    return trainable
