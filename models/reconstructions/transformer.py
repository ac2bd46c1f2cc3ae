"""Modality reconstruction network (MRN of IB-IUMAD): UniAD's reconstruction transformer with IUF conditioning.

One instance per modality. Tokens of the (jittered) feature map are projected ``C → hidden``, pass
``num_encoder_layers`` encoder layers and ``num_decoder_layers`` decoder layers, and are projected
back ``hidden → C``.

- Encoder layer ``l``: self-attention whose *queries* are ``(t + pos) ⊙ m_l`` when a condition
  ``m_l`` (the object-aware features of the Mamba decoder / ViT, IUF-style) is given and ``t + pos``
  otherwise; keys are ``t + pos``, values ``t`` (never modulated).
- Decoder layer ``l`` (UniAD's layer-wise query): its own learned query embedding goes through
  self-attention, then cross-attends to the previous decoder layer's output (the encoder output,
  "memory", for the first layer), then an FFN. The output tokens are built only from attention over
  the input, never from an identity path, so anomalies are hard to copy through.

Layers are post-norm (``x = LayerNorm(x + sublayer(x))``), as in UniAD's configuration, so every
layer output is normalised and no final norm is needed. Each layer's FFN output ``nn.Linear`` is
the attribute ``ffn_out``; the incremental gradient-projection regulariser hooks those by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from models.class_adapters import ClassLowRankAdapter

#: ``adapt(layer name, layer input) -> update``: the class adapters' contribution to one linear layer.
Adapt = Callable[[str, Tensor], Tensor]

__all__ = ["ReconstructionTransformer", "EncoderLayer", "DecoderLayer"]


class _LayerWithFeedForward(nn.Module):
    """Base of the encoder/decoder layers: the FFN ``hidden → dim_feedforward → hidden`` with ReLU.

    Its output layer is the attribute ``ffn_out`` (hook point of the incremental regulariser).
    """

    def __init__(self, hidden_dim: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.ffn_in = nn.Linear(hidden_dim, dim_feedforward)
        self.ffn_dropout = nn.Dropout(dropout)
        self.ffn_out = nn.Linear(dim_feedforward, hidden_dim)

    def feed_forward(self, tokens: Tensor, adapt: Adapt | None = None) -> Tensor:
        """``(B, L, hidden) -> (B, L, hidden)``; ``adapt(name, x)`` adds the class adapters' updates."""
        hidden = self.ffn_in(tokens)
        if adapt is not None:
            hidden = hidden + adapt("ffn_in", tokens)
        hidden = self.ffn_dropout(torch.relu(hidden))
        out = self.ffn_out(hidden)
        return out if adapt is None else out + adapt("ffn_out", hidden)


class EncoderLayer(_LayerWithFeedForward):
    """Post-norm transformer encoder layer with optionally modulated attention queries.

    Args:
        hidden_dim: token width.
        num_heads: attention heads.
        dim_feedforward: FFN inner width.
        dropout: dropout on attention weights, residual branches and FFN.
    """

    def __init__(self, hidden_dim: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__(hidden_dim, dim_feedforward, dropout)
        self.self_attn = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(hidden_dim)

    def forward(self, tokens: Tensor, pos: Tensor, cond: Tensor | None = None, adapt: Adapt | None = None) -> Tensor:
        """Encode tokens.

        Args:
            tokens: ``(B, L, hidden)``.
            pos: ``(1, L, hidden)`` positional embedding.
            cond: ``(B, L, hidden)`` query modulation ``m_l`` or ``None``.
            adapt: the class adapters of this layer's FFN, or ``None``.

        Returns:
            ``(B, L, hidden)``.
        """
        key = tokens + pos
        query = key if cond is None else key * cond
        attended = self.self_attn(query, key, tokens, need_weights=False)[0]
        tokens = self.norm1(tokens + self.dropout1(attended))
        return self.norm2(tokens + self.dropout2(self.feed_forward(tokens, adapt)))


class DecoderLayer(_LayerWithFeedForward):
    """Post-norm decoder layer with its own learned query embedding (UniAD's layer-wise query).

    Args:
        num_tokens: ``h * w``, the number of query tokens.
        hidden_dim: token width.
        num_heads: attention heads.
        dim_feedforward: FFN inner width.
        dropout: dropout on attention weights, residual branches and FFN.
    """

    def __init__(self, num_tokens: int, hidden_dim: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__(hidden_dim, dim_feedforward, dropout)
        self.query_embed = nn.Parameter(torch.randn(1, num_tokens, hidden_dim))
        self.self_attn = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.cross_attn = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(hidden_dim)
        self.dropout3 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(hidden_dim)

    def forward(self, source: Tensor, pos: Tensor, adapt: Adapt | None = None) -> Tensor:
        """Decode from ``source`` (the previous decoder output, or the encoder memory).

        Args:
            source: ``(B, L, hidden)`` tokens the queries attend to.
            pos: ``(1, L, hidden)`` positional embedding.
            adapt: the class adapters of this layer's FFN, or ``None``.

        Returns:
            ``(B, L, hidden)``.
        """
        query = self.query_embed.expand(source.shape[0], -1, -1)  # 1×L×D -> B×L×D
        with_pos = query + pos
        attended = self.self_attn(with_pos, with_pos, query, need_weights=False)[0]
        query = self.norm1(query + self.dropout1(attended))
        attended = self.cross_attn(query + pos, source + pos, source, need_weights=False)[0]
        query = self.norm2(query + self.dropout2(attended))
        return self.norm3(query + self.dropout3(self.feed_forward(query, adapt)))


class ReconstructionTransformer(nn.Module):
    """UniAD-style feature reconstruction transformer with IUF query conditioning (one modality).

    Args:
        in_channels: ``C``, channels of the feature map (272 for EfficientNet-B4 levels 1-4).
        feature_size: ``(h, w)`` of the feature map (14 × 14 at 224 px, stride 16).
        hidden_dim: token width inside the transformer.
        num_heads: attention heads (must divide ``hidden_dim``).
        num_encoder_layers: encoder depth (= number of condition tensors expected).
        num_decoder_layers: decoder depth.
        dim_feedforward: FFN inner width.
        dropout: dropout probability.
        class_adapter_rank: rank of the per-class adapters (:mod:`models.class_adapters`) of the input and
            output projections and of every FFN layer; 0 = none (the paper's network).
        num_classes: classes the adapters start with.
    """

    def __init__(
        self,
        in_channels: int,
        feature_size: tuple[int, int],
        hidden_dim: int = 256,
        num_heads: int = 8,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        class_adapter_rank: int = 0,
        num_classes: int = 1,
    ) -> None:
        super().__init__()
        if hidden_dim % num_heads != 0:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        if num_encoder_layers < 1 or num_decoder_layers < 1:
            raise ValueError(
                f"need at least one encoder and one decoder layer, got {num_encoder_layers} and {num_decoder_layers}"
            )
        self.in_channels = int(in_channels)
        self.feature_size = (int(feature_size[0]), int(feature_size[1]))
        self.hidden_dim = int(hidden_dim)
        self.num_encoder_layers = int(num_encoder_layers)
        self.num_decoder_layers = int(num_decoder_layers)
        num_tokens = self.feature_size[0] * self.feature_size[1]
        self.input_proj = nn.Linear(in_channels, hidden_dim)
        self.pos_embed = nn.Parameter(torch.empty(1, num_tokens, hidden_dim))
        self.encoder = nn.ModuleList(
            EncoderLayer(hidden_dim, num_heads, dim_feedforward, dropout) for _ in range(num_encoder_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(num_tokens, hidden_dim, num_heads, dim_feedforward, dropout) for _ in range(num_decoder_layers)
        )
        self.output_proj = nn.Linear(hidden_dim, in_channels)
        self._reset_parameters()
        self.adapters = None
        if class_adapter_rank > 0:
            shapes = {"input_proj": (in_channels, hidden_dim), "output_proj": (hidden_dim, in_channels)}
            for index in range(num_encoder_layers + num_decoder_layers):
                shapes[f"layer{index}_ffn_in"] = (hidden_dim, dim_feedforward)
                shapes[f"layer{index}_ffn_out"] = (dim_feedforward, hidden_dim)
            self.adapters = nn.ModuleDict(
                {name: ClassLowRankAdapter(i, o, class_adapter_rank, num_classes) for name, (i, o) in shapes.items()}
            )

    def _reset_parameters(self) -> None:
        """Xavier-uniform linear weights, zero biases, unit-scale positional embedding, near-zero output projection.

        The positional embedding has the scale of the (layer-normalised) tokens so that queries can find
        their own position from the first step; the near-zero output projection starts the reconstruction at ~0
        instead of at unit-scale noise (backbone features can be much smaller than 1).
        """
        nn.init.normal_(self.pos_embed, std=1.0)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.output_proj.weight, std=1e-3)  # near zero, yet gradients flow from step one

    def _adapter(self, class_ids: Tensor | None, prefix: str) -> Adapt | None:
        """``adapt(name, x)`` of the class adapters named ``prefix + name``, or None without adapters."""
        if self.adapters is None:
            return None
        if class_ids is None:
            raise ValueError("a reconstruction network with class adapters needs the class of every input")
        adapters = self.adapters
        return lambda name, x: adapters[prefix + name](x, class_ids)

    def forward(
        self, feature: Tensor, cond: list[Tensor] | None = None, class_ids: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """Reconstruct a feature map.

        Args:
            feature: ``(B, C, h, w)`` (jittered in training) features.
            cond: ``num_encoder_layers`` tensors ``(B, h*w, hidden)`` multiplying the encoder queries,
                or ``None`` (unconditioned).
            class_ids: ``(B,)`` class of every input: whose adapters are used (needed with adapters only).

        Returns:
            The reconstruction ``(B, C, h, w)`` and the encoder layers' outputs, each ``(B, h*w, hidden)``.
        """
        batch, channels, height, width = feature.shape
        if channels != self.in_channels or (height, width) != self.feature_size:
            raise ValueError(
                f"expected features (B, {self.in_channels}, {self.feature_size[0]}, {self.feature_size[1]}), "
                f"got {tuple(feature.shape)}"
            )
        num_tokens = height * width
        if cond is not None:
            if len(cond) != self.num_encoder_layers:
                raise ValueError(f"expected {self.num_encoder_layers} condition tensors, got {len(cond)}")
            expected = (batch, num_tokens, self.hidden_dim)
            for layer, m in enumerate(cond):
                if tuple(m.shape) != expected:
                    raise ValueError(f"condition {layer}: expected shape {expected}, got {tuple(m.shape)}")
        adapt = self._adapter(class_ids, "")
        flat = feature.flatten(2).transpose(1, 2)  # B×C×h×w -> B×(h·w)×C
        tokens = self.input_proj(flat) if adapt is None else self.input_proj(flat) + adapt("input_proj", flat)
        encoder_outputs = []
        for layer, encoder_layer in enumerate(self.encoder):
            layer_cond = None if cond is None else cond[layer]
            tokens = encoder_layer(tokens, self.pos_embed, layer_cond, self._adapter(class_ids, f"layer{layer}_"))
            encoder_outputs.append(tokens)
        decoded = tokens
        for index, decoder_layer in enumerate(self.decoder, start=len(self.encoder)):
            decoded = decoder_layer(decoded, self.pos_embed, self._adapter(class_ids, f"layer{index}_"))
        rec = self.output_proj(decoded)
        if adapt is not None:
            rec = rec + adapt("output_proj", decoded)
        rec = rec.transpose(1, 2).reshape(batch, channels, height, width)  # -> B×C×h×w
        return rec, encoder_outputs
