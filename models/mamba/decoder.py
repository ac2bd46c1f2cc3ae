"""Mamba decoder, the paper's conditioner: stacked ESSM blocks giving object-aware maps ``M^l`` and class logits.

Per modality (RGB and depth images each have their own weights): a patch embedding maps the raw image
``(B, 3, S, S)`` to the reconstruction grid ``(B, h, w, E)`` (``h = S // patch_size``), then ``num_layers``
ESSM blocks; block ``l``'s output gives ``M^l = 1 + tanh(Linear(tokens))`` ``(B, h*w, cond_dim)``, which
multiplies the queries of reconstruction-encoder layer ``l`` (so there is one block per conditioned
layer, and maps are centred at 1: see :class:`models.conditioners.CondMapHead`). The mean-pooled final
tokens → LayerNorm → :class:`models.classifier.GrowingClassifier` predict the object category.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.conditioners import ConditionerBase, ConditionerBranch, PatchEmbed, resolve_num_layers
from models.mamba.essm import ESSMBlock
from utils.errors import ConfigError

__all__ = ["MambaDecoder"]


class MambaDecoder(ConditionerBase):
    """ESSM-block conditioner with the shared conditioner interface.

    ``forward(images: dict[str, (B, 3, S, S)])`` returns
    ``{"cond": {modality: [M^1..M^L] each (B, h*w, cond_dim)}, "logits": {modality: (B, K)}}``.

    Args:
        modalities: Modality names, e.g. ``["rgb", "depth"]``.
        image_size: Input side ``S``.
        patch_size: Patch side (= feature stride, 16).
        cond_dim: Map channels (= reconstruction hidden size).
        num_cond_layers: Maps per modality (= reconstruction encoder layers).
        num_classes: Initial class count ``K``.
        embed_dim: Token channels of the decoder.
        num_layers: ESSM blocks; ``None`` = ``num_cond_layers`` (any other value must equal it, since block
            ``l`` conditions encoder layer ``l``).
        d_state: SSM state size.
        expand: SSM-branch width as a multiple of ``embed_dim``.
        dt_rank: Step-projection rank; ``"auto"`` = ``ceil(embed_dim / 16)``.
        d_conv: Depthwise-convolution kernel size.
        num_heads: Attention heads per ESSM block.
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
        d_state: int = 16,
        expand: float = 2.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        num_heads: int = 4,
    ) -> None:
        super().__init__(modalities, image_size, patch_size, cond_dim, num_cond_layers, num_classes)
        num_layers = resolve_num_layers(num_layers, num_cond_layers, type(self).__name__)
        if embed_dim % num_heads:
            raise ConfigError(f"MambaDecoder: num_heads={num_heads} must divide embed_dim={embed_dim}")
        grid = (self.grid_size, self.grid_size)
        for name in self.modalities:
            blocks = [
                ESSMBlock(
                    embed_dim,
                    d_state=d_state,
                    expand=expand,
                    dt_rank=dt_rank,
                    d_conv=d_conv,
                    num_heads=num_heads,
                    grid_size=grid,
                )
                for _ in range(num_layers)
            ]
            embed = PatchEmbed(embed_dim, patch_size, self.grid_size)
            self.branches[name] = ConditionerBranch(embed, blocks, embed_dim, cond_dim, num_classes)
