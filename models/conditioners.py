"""Object-aware conditioners: per-modality class-aware maps that modulate the reconstruction queries.

A conditioner sees the raw images of each modality, classifies the object category (CE losses
``L_rgb``, ``L_depth`` of the paper) and produces one conditioning map ``M^l (B, h*w, cond_dim)`` per
reconstruction-encoder layer ``l``; that layer's queries are multiplied by ``M^l`` (IUF-style object-aware
conditioning). The paper's conditioner is the Mamba decoder (:class:`models.mamba.MambaDecoder`);
:class:`ViTConditioner` here is the IUF-style transformer baseline (the ``condition: vit`` ablation).

This module also holds the pieces both conditioners share: :class:`PatchEmbed`, :class:`CondMapHead`,
:class:`ClassHead`, the per-modality :class:`ConditionerBranch` and the :class:`ConditionerBase` that
checks the common constructor arguments and runs the branches.

Token order: ``h*w`` tokens are the ``(h, w)`` grid flattened row-major, the order of
``feature.flatten(2).transpose(1, 2)`` on a ``(B, C, h, w)`` feature map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models.classifier import GrowingClassifier
from utils.errors import ConfigError

__all__ = [
    "ClassHead",
    "CondMapHead",
    "ConditionerBase",
    "ConditionerBranch",
    "PatchEmbed",
    "ViTConditioner",
    "resolve_num_layers",
]


def resolve_num_layers(num_layers: int | None, num_cond_layers: int, owner: str) -> int:
    """Number of conditioner blocks: one block per conditioned reconstruction-encoder layer.

    Block ``l`` produces ``M^l``, so ``num_layers`` must equal ``num_cond_layers``; ``None`` means equal.

    Raises:
        ConfigError: ``num_layers`` differs from ``num_cond_layers``.
    """
    if num_cond_layers < 1:
        raise ConfigError(
            f"{owner}: num_cond_layers (reconstruction num_encoder_layers) must be >= 1, got {num_cond_layers}"
        )
    if num_layers is None:
        return num_cond_layers
    if num_layers != num_cond_layers:
        raise ConfigError(
            f"{owner}: num_layers={num_layers} but the reconstruction has num_encoder_layers={num_cond_layers}; "
            f"each block conditions one encoder layer, so set the conditioner's num_layers to {num_cond_layers} "
            "(or leave it unset)"
        )
    return num_layers


class PatchEmbed(nn.Module):
    """Image to token grid: ``Conv(k = s = patch_size)`` → LayerNorm (→ + learned position embedding).

    Args:
        embed_dim: Token channels ``E``.
        patch_size: Patch side (= stride).
        grid_size: Token grid side ``h = S // patch_size`` (needed for the position embedding).
        in_chans: Image channels.
        pos_embed: Add a learned ``(1, h, h, E)`` position embedding.
    """

    def __init__(self, embed_dim: int, patch_size: int, grid_size: int, in_chans: int = 3, pos_embed: bool = False):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid_size, grid_size, embed_dim)) if pos_embed else None
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, image: Tensor) -> Tensor:
        """``(B, 3, S, S) -> (B, h, w, E)``."""
        tokens = self.norm(self.proj(image).permute(0, 2, 3, 1))  # (B, E, h, w) -> (B, h, w, E)
        return tokens if self.pos_embed is None else tokens + self.pos_embed


class CondMapHead(nn.Module):
    """Token grid to a conditioning map centred at 1: ``M = 1 + tanh(Linear(tokens))``, in ``(0, 2)``.

    The map multiplies attention queries. Centred at 1 (small init → ``M ≈ 1``), the reconstruction
    starts as the unconditioned transformer and conditioning is learned as a deviation from identity;
    bounded in ``(0, 2)``, a map can neither flip a query's sign nor blow up the attention logits.

    Args:
        embed_dim: Token channels ``E``.
        cond_dim: Map channels (the reconstruction's hidden size).
    """

    def __init__(self, embed_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embed_dim, cond_dim)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        """``(B, h, w, E) -> (B, h*w, cond_dim)``."""
        return 1.0 + torch.tanh(self.proj(tokens.flatten(1, 2)))


class ClassHead(nn.Module):
    """Mean-pooled tokens → LayerNorm → :class:`GrowingClassifier`: ``(B, h, w, E) -> (B, K)``."""

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.fc = GrowingClassifier(embed_dim, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        """``(B, h, w, E) -> (B, K)``."""
        return self.fc(self.norm(tokens.mean(dim=(1, 2))))


class ConditionerBranch(nn.Module):
    """One modality: patch embedding, blocks on the ``(B, h, w, E)`` grid, a map head per block, a class head.

    Args:
        embed: Patch embedding ``(B, 3, S, S) -> (B, h, w, E)``.
        blocks: Blocks mapping ``(B, h, w, E)`` to the same shape; block ``l`` gives ``M^l``.
        embed_dim: ``E``.
        cond_dim: Map channels.
        num_classes: Initial class count.
    """

    def __init__(
        self, embed: nn.Module, blocks: Sequence[nn.Module], embed_dim: int, cond_dim: int, num_classes: int
    ) -> None:
        super().__init__()
        self.embed = embed
        self.blocks = nn.ModuleList(blocks)
        self.cond_heads = nn.ModuleList(CondMapHead(embed_dim, cond_dim) for _ in self.blocks)
        self.class_head = ClassHead(embed_dim, num_classes)

    def forward(self, image: Tensor) -> tuple[list[Tensor], Tensor]:
        """``(B, 3, S, S)`` → (``[M^1..M^L]`` each ``(B, h*w, cond_dim)``, logits ``(B, K)``)."""
        tokens = self.embed(image)
        maps = []
        for block, head in zip(self.blocks, self.cond_heads, strict=True):
            tokens = block(tokens)
            maps.append(head(tokens))
        return maps, self.class_head(tokens)


class ConditionerBase(nn.Module):
    """Checks the shared conditioner arguments and runs one :class:`ConditionerBranch` per modality.

    Subclasses call ``super().__init__`` and then fill ``self.branches`` (one branch per modality).

    Args:
        modalities: Modality names, e.g. ``["rgb", "depth"]``; keys of the ``images`` dict.
        image_size: Input side ``S``.
        patch_size: Patch side (= the feature stride); the map grid is ``h = w = S // patch_size``.
        cond_dim: Map channels (= reconstruction hidden size).
        num_cond_layers: Maps per modality (= reconstruction encoder layers).
        num_classes: Initial class count ``K``.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        image_size: int,
        patch_size: int,
        cond_dim: int,
        num_cond_layers: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if isinstance(modalities, str) or not modalities or len(set(modalities)) != len(modalities):
            raise ConfigError(f"{owner}: modalities must be a non-empty list of distinct names, got {modalities!r}")
        if patch_size < 1 or image_size < patch_size or image_size % patch_size:
            raise ConfigError(
                f"{owner}: image_size={image_size} must be a positive multiple of patch_size={patch_size} "
                "(the feature stride)"
            )
        if cond_dim < 1 or num_classes < 1:
            raise ConfigError(f"{owner}: cond_dim and num_classes must be >= 1, got {cond_dim} and {num_classes}")
        self.modalities = tuple(modalities)
        self.image_size = image_size
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.cond_dim = cond_dim
        self.num_cond_layers = num_cond_layers
        self.branches = nn.ModuleDict()

    @property
    def num_classes(self) -> int:
        """Current class count of the heads."""
        return next(iter(self.branches.values())).class_head.fc.num_classes

    def forward(self, images: dict[str, Tensor]) -> dict[str, dict]:
        """Condition maps and class logits of every modality.

        Args:
            images: Modality name → image ``(B, 3, S, S)``; names outside ``modalities`` are ignored.

        Returns:
            ``{"cond": {modality: [M^1..M^L] each (B, h*w, cond_dim)}, "logits": {modality: (B, K)}}``.
        """
        cond: dict[str, list[Tensor]] = {}
        logits: dict[str, Tensor] = {}
        for name in self.modalities:
            if name not in images:
                raise ValueError(f"{type(self).__name__}: no {name!r} image given; got keys {sorted(images)}")
            image = images[name]
            size = self.image_size
            if image.dim() != 4 or image.shape[1] != 3 or tuple(image.shape[2:]) != (size, size):
                raise ValueError(f"{name} image: expected (B, 3, {size}, {size}), got {tuple(image.shape)}")
            cond[name], logits[name] = self.branches[name](image)
        return {"cond": cond, "logits": logits}


class _SequenceBlock(nn.Module):
    """Runs a token-sequence layer ``(B, N, E) -> (B, N, E)`` on a ``(B, h, w, E)`` grid."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, tokens: Tensor) -> Tensor:
        batch, height, width, channels = tokens.shape
        return self.layer(tokens.reshape(batch, height * width, channels)).view(batch, height, width, channels)


class ViTConditioner(ConditionerBase):
    """IUF-style transformer conditioner (baseline of the Mamba decoder, ``condition: vit``).

    Per modality: patch embedding with a learned position embedding, ``num_layers`` pre-norm
    ``nn.TransformerEncoderLayer`` blocks (layer ``l`` → ``M^l``), and a class head on the mean token.

    Args:
        modalities, image_size, patch_size, cond_dim, num_cond_layers, num_classes: See
            :class:`ConditionerBase`.
        embed_dim: Token channels.
        num_layers: Transformer layers; ``None`` = ``num_cond_layers`` (any other value must equal it).
        num_heads: Attention heads.
        mlp_ratio: Feed-forward width as a multiple of ``embed_dim``.
        dropout: Dropout inside the transformer layers.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        image_size: int,
        patch_size: int,
        cond_dim: int,
        num_cond_layers: int,
        num_classes: int,
        embed_dim: int = 128,
        num_layers: int | None = None,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(modalities, image_size, patch_size, cond_dim, num_cond_layers, num_classes)
        num_layers = resolve_num_layers(num_layers, num_cond_layers, type(self).__name__)
        if embed_dim % num_heads:
            raise ConfigError(f"ViTConditioner: num_heads={num_heads} must divide embed_dim={embed_dim}")
        for name in self.modalities:
            layers = [
                _SequenceBlock(
                    nn.TransformerEncoderLayer(
                        embed_dim,
                        num_heads,
                        dim_feedforward=int(mlp_ratio * embed_dim),
                        dropout=dropout,
                        activation="gelu",
                        batch_first=True,
                        norm_first=True,
                    )
                )
                for _ in range(num_layers)
            ]
            embed = PatchEmbed(embed_dim, patch_size, self.grid_size, pos_embed=True)
            self.branches[name] = ConditionerBranch(embed, layers, embed_dim, cond_dim, num_classes)
