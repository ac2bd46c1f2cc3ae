"""Information-bottleneck fusion module (IBFM of IB-IUMAD).

Given the per-modality reconstructions ``R_m`` of the MRNs:

1. tokens of each modality are projected to ``hidden_dim``;
2. cross-attention: the tokens of each modality query the tokens of the other modality
   (RGB → depth and depth → RGB), each direction with a residual and LayerNorm; the directions are
   summed into ``F_fusion`` ``(B, h*w, hidden)``. With a single modality this is self-attention;
3. bottleneck: encoder ``Linear → ReLU → Linear`` to ``z`` ``(B, h*w, z_dim)``, decoder
   ``Linear → ReLU → Linear`` to ``C_total = Σ C_m`` channels;
4. ``F^g = concat_m(R_m) + decoder(z)`` (``residual=True``, the default) or ``F^g = decoder(z)``.

The residual choice: the anomaly map is ``‖F^g − clean features‖``, so ``F^g`` must reproduce the
normal features at full 272-channel-per-modality detail and fail on anomalies. Everything in ``F^g``
still comes from the MRN outputs (learned-query decoders over jittered inputs), so the residual adds no
identity shortcut from the clean features; it lets the MSE loss reach the MRNs directly (as in UniAD)
and makes the bottleneck a filtered correction of the aggregated reconstruction rather than the only
path for 544 channels through 128 dimensions. The decoder's last layer starts near zero, so training
starts from the naive aggregation.

Class head ``h`` (for the self-distillation IB loss of DMIB): a :class:`GrowingClassifier` on mean-pooled
``hidden``-wide tokens. The teacher is ``h(mean F_fusion)``; the student is ``h(P · mean F^g)`` where
``P`` (``student_proj``, ``C_total → hidden``) maps ``F^g`` into ``h``'s input space, so both predictions
come from the same classifier. The module returns its own loss term, :func:`ib_loss`:
``L_IB = T² · KL(softmax(teacher.detach() / T) ‖ softmax(student / T))`` with ``T`` = ``temperature``
(``aux_losses["ib"]``), and offers the teacher's logits for a class cross-entropy ``ib_ce``
(``class_logits``; weight 0 in the paper's config). The criterion weighs and sums them by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.classifier import GrowingClassifier

__all__ = ["IBFusion", "ib_loss"]


def ib_loss(teacher: Tensor, student: Tensor, temperature: float | Tensor) -> Tensor:
    """``T² · KL(softmax(teacher / T) ‖ softmax(student / T))``, batch mean; no gradient to the teacher.

    Args:
        teacher: ``(B, K)`` logits of ``h(F_fusion)``.
        student: ``(B, K)`` logits of ``h(F^g)``.
        temperature: ``T > 0``.

    Returns:
        0-d loss.
    """
    teacher_log_prob = F.log_softmax(teacher.detach() / temperature, dim=1)
    student_log_prob = F.log_softmax(student / temperature, dim=1)
    kl = F.kl_div(student_log_prob, teacher_log_prob, reduction="batchmean", log_target=True)
    return kl * temperature**2


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """``Linear → ReLU → Linear`` applied per token."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class IBFusion(nn.Module):
    """Cross-attention fusion + deterministic information bottleneck.

    Args:
        in_channels: channels of each modality's reconstruction, in modality order (one or two entries).
        num_classes: outputs of the class head ``h``.
        hidden_dim: token width of the fusion.
        num_heads: attention heads (must divide ``hidden_dim``).
        z_dim: bottleneck width.
        temperature: softening temperature ``T`` of the IB loss.
        dropout: attention dropout.
        residual: ``F^g = concat(R) + decoder(z)`` when true, ``decoder(z)`` otherwise.

    Attributes:
        out_channels: ``sum(in_channels)``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        hidden_dim: int = 256,
        num_heads: int = 8,
        z_dim: int = 128,
        temperature: float = 2.0,
        dropout: float = 0.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if len(in_channels) not in (1, 2):
            raise ValueError(f"IBFusion fuses one or two modalities, got in_channels {list(in_channels)}")
        if hidden_dim % num_heads != 0:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.in_channels = [int(c) for c in in_channels]
        self.out_channels = sum(self.in_channels)
        self.temperature = float(temperature)
        self.residual = residual
        self.input_proj = nn.ModuleList(nn.Linear(c, hidden_dim) for c in self.in_channels)
        self.attn = nn.ModuleList(
            nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True) for _ in self.in_channels
        )
        self.attn_norm = nn.ModuleList(nn.LayerNorm(hidden_dim) for _ in self.in_channels)
        self.encoder = _mlp(hidden_dim, hidden_dim, z_dim)
        self.decoder = _mlp(z_dim, hidden_dim, self.out_channels)
        # LayerNorm: h reads F^g's class information from its direction, so matching the teacher never asks
        # F^g for a large magnitude that would fight the reconstruction (MSE) objective.
        self.student_proj = nn.Sequential(nn.Linear(self.out_channels, hidden_dim), nn.LayerNorm(hidden_dim))
        self.head = GrowingClassifier(hidden_dim, num_classes)
        if residual:
            # Near-zero (not zero, so gradients reach the fusion from the first step) correction at init.
            nn.init.normal_(self.decoder[-1].weight, std=1e-3)
            nn.init.zeros_(self.decoder[-1].bias)

    def fuse(self, tokens: Sequence[Tensor]) -> Tensor:
        """Cross-attention fusion: modality ``i`` queries the other modality (itself when alone).

        Args:
            tokens: one ``(B, L, hidden)`` tensor per modality.

        Returns:
            ``F_fusion`` ``(B, L, hidden)``.
        """
        fused = None
        for index, (query, attn, norm) in enumerate(zip(tokens, self.attn, self.attn_norm)):
            context = tokens[1 - index] if len(tokens) == 2 else query
            attended = attn(query, context, context, need_weights=False)[0]
            direction = norm(query + attended)
            fused = direction if fused is None else fused + direction
        return fused

    def forward(self, recons: Sequence[Tensor]) -> dict[str, Tensor]:
        """Fuse the per-modality reconstructions.

        Args:
            recons: one ``(B, C_m, h, w)`` reconstruction per modality, in modality order.

        Returns:
            ``"feature_rec"``: ``F^g`` ``(B, C_total, h, w)``; ``"ib_teacher"`` / ``"ib_student"``: ``(B, K)``
            class logits of ``h(F_fusion)`` and ``h(P F^g)``; ``"aux_losses"``: ``{"ib": L_IB}`` (0-d);
            ``"class_logits"``: ``{"ib_ce": teacher}`` (trained against the class ids where weighted).
        """
        if len(recons) != len(self.in_channels):
            raise ValueError(f"expected {len(self.in_channels)} reconstructions, got {len(recons)}")
        for recon, channels in zip(recons, self.in_channels):
            if recon.dim() != 4 or recon.shape[1] != channels:
                raise ValueError(f"expected a (B, {channels}, h, w) reconstruction, got {tuple(recon.shape)}")
        batch, _, height, width = recons[0].shape
        tokens = [proj(r.flatten(2).transpose(1, 2)) for proj, r in zip(self.input_proj, recons)]  # B×C×h×w -> B×L×D
        fused = self.fuse(tokens)
        z = self.encoder(fused)  # B×L×z_dim
        decoded = self.decoder(z).transpose(1, 2).reshape(batch, self.out_channels, height, width)  # -> B×C×h×w
        feature_rec = torch.cat(list(recons), dim=1) + decoded if self.residual else decoded
        teacher = self.head(fused.mean(dim=1))
        student = self.head(self.student_proj(feature_rec.mean(dim=(2, 3))))
        return {
            "feature_rec": feature_rec,
            "ib_teacher": teacher,
            "ib_student": student,
            "aux_losses": {"ib": ib_loss(teacher.float(), student.float(), self.temperature)},
            "class_logits": {"ib_ce": teacher},
        }
