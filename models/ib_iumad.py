"""The IB-IUMAD network (Algorithm 1 of the paper, one forward pass).

``inputs`` (modality → image) → frozen backbone + neck (MFEN, shared by both modalities) → clean features
``F_m`` (optionally standardised per channel with training-normal statistics, :mod:`models.feature_norm`)
→ feature jitter (training only) → ``A_m`` → one reconstruction transformer per modality (MRN),
conditioned on the Mamba decoder's (or ViT's) per-layer features ``M_m^l`` → ``R_m`` → fusion
(IBFM or naive aggregation) → ``F^g`` → discriminator → anomaly maps and image scores.

The frozen part is split out as :meth:`IBIUMAD.extract_features` so a trainer may cache it;
``forward(inputs) == forward_from_features(extract_features(inputs), inputs)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from models.backbones.timm_backbone import TimmFeatureExtractor
from models.class_adapters import ClassLowRankAdapter, PrototypeRouter
from models.classifier import GrowingClassifier
from models.discriminator import Discriminator, keep_on_region
from models.feature_norm import FeatureStandardizer
from models.jitter import feature_jitter
from models.map_fusion import NormalMapFusion
from models.necks.multiscale import MultiScaleConcat
from models.reconstructions.transformer import ReconstructionTransformer

__all__ = ["IBIUMAD", "MODALITIES", "SCORE_REGIONS", "check_modalities"]

MODALITIES = ("rgb", "depth")
#: Where maps are scored: the whole image (the paper), or the object footprint (``inputs["foreground"]``).
SCORE_REGIONS = ("image", "object")


def check_modalities(modalities: Any) -> list[str]:
    """The modalities as a list, checked: a non-empty subset of :data:`MODALITIES` in any order, no repeats.

    Raises:
        ValueError: naming what is wrong.
    """
    if not isinstance(modalities, list | tuple) or not modalities:
        raise ValueError(f"must be a non-empty list from {list(MODALITIES)}, got {modalities!r}")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown {unknown}; valid: {list(MODALITIES)}")
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"duplicates in {list(modalities)}")
    return list(modalities)


class IBIUMAD(nn.Module):
    """Unified incremental multimodal anomaly detector.

    Args:
        backbone: frozen multi-scale feature extractor (shared by RGB and depth images).
        neck: aggregates the backbone levels into one ``(B, C, h, w)`` map.
        reconstructions: modality → reconstruction transformer (MRN), one per entry of ``modalities``.
        fusion: maps the list of reconstructions (modality order) to ``{"feature_rec": F^g, ...}``.
        discriminator: turns ``F^g`` vs clean features into maps and scores.
        modalities: the modalities used, a non-empty subset of ``("rgb", "depth")`` in this order of use.
        image_size: side ``S`` of the square input images.
        num_classes: number of object classes (used when no module has a class head).
        conditioner: object-aware conditioner (Mamba decoder / ViT) or ``None``.
        jitter_scale: feature-jitter scale (training only).
        jitter_prob: feature-jitter probability per token (training only).
        feature_norm: per-channel standardisation of the clean features, or ``None`` (the paper's raw features).
        router: picks the class adapters of an unlabelled input (with class adapters in the reconstructions),
            or ``None``.
        map_fusion: makes the fused map from the per-modality maps standardised against normal training maps
            (``model.map_fusion: normal_zmax``), or ``None`` for the discriminator's L2 over all channels.
        score_region: ``"image"`` scores the whole maps (the paper); ``"object"`` keeps every map on the
            object footprint ``inputs["foreground"]`` first (:mod:`datasets.footprint`), in eval mode.
    """

    def __init__(
        self,
        backbone: TimmFeatureExtractor,
        neck: MultiScaleConcat,
        reconstructions: Mapping[str, ReconstructionTransformer],
        fusion: nn.Module,
        discriminator: Discriminator,
        modalities: Sequence[str],
        image_size: int,
        num_classes: int,
        conditioner: nn.Module | None = None,
        jitter_scale: float = 20.0,
        jitter_prob: float = 1.0,
        feature_norm: FeatureStandardizer | None = None,
        router: PrototypeRouter | None = None,
        map_fusion: NormalMapFusion | None = None,
        score_region: str = "image",
    ) -> None:
        super().__init__()
        modalities = check_modalities(modalities)
        if score_region not in SCORE_REGIONS:
            raise ValueError(f"score_region must be one of {list(SCORE_REGIONS)}, got {score_region!r}")
        if set(reconstructions) != set(modalities):
            raise ValueError(f"need one reconstruction per modality {modalities}, got {sorted(reconstructions)}")
        self.modalities = modalities
        self.image_size = int(image_size)
        self.backbone = backbone
        self.neck = neck
        self.conditioner = conditioner
        self.reconstructions = nn.ModuleDict({m: reconstructions[m] for m in modalities})
        self.fusion = fusion
        self.discriminator = discriminator
        self.jitter_scale = float(jitter_scale)
        self.jitter_prob = float(jitter_prob)
        self.feature_norm = feature_norm
        self.router = router
        self.map_fusion = map_fusion
        self.score_region = score_region
        self._num_classes = int(num_classes)
        channels = neck.out_channels
        self.channel_splits = {m: (i * channels, (i + 1) * channels) for i, m in enumerate(modalities)}

    @property
    def num_classes(self) -> int:
        """Current number of object classes of every class head."""
        return self._num_classes

    def grow_classes(self, num_classes: int) -> None:
        """Grow every class head to ``num_classes`` outputs; rows of the classes seen so far are kept as they are."""
        if num_classes < self._num_classes:
            raise ValueError(f"cannot shrink the class heads from {self._num_classes} to {num_classes} classes")
        for module in self.modules():
            if isinstance(module, GrowingClassifier | ClassLowRankAdapter | PrototypeRouter | NormalMapFusion):
                module.grow(num_classes)
        self._num_classes = int(num_classes)

    def _inputs(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The images of the used modalities, validated: modality → ``(B, 3, S, S)``; other entries are ignored."""
        checked = {}
        for modality in self.modalities:
            tensor = inputs.get(modality)
            if tensor is None:
                raise ValueError(f"the model uses modality '{modality}' but the inputs have {sorted(inputs)}")
            if tensor.dim() != 4 or tuple(tensor.shape[1:]) != (3, self.image_size, self.image_size):
                raise ValueError(
                    f"{modality} input: expected (B, 3, {self.image_size}, {self.image_size}), "
                    f"got {tuple(tensor.shape)}"
                )
            checked[modality] = tensor
        return checked

    @torch.no_grad()
    def extract_features(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Raw features of the frozen part (backbone + neck), without gradients (before ``feature_norm``).

        Args:
            inputs: modality → ``(B, 3, S, S)`` image, for every modality of the model (others are ignored).

        Returns:
            modality → ``(B, C, h, w)``.
        """
        return {m: self.neck(self.backbone(x)) for m, x in self._inputs(inputs).items()}

    def forward_from_features(
        self,
        features: Mapping[str, Tensor],
        inputs: Mapping[str, Tensor],
        class_ids: Tensor | None = None,
        maps: bool = True,
    ) -> dict[str, Tensor]:
        """Everything after the frozen part.

        Args:
            features: modality → raw ``(B, C, h, w)`` features from :meth:`extract_features`; standardised here
                when the model has a ``feature_norm``.
            inputs: modality → ``(B, 3, S, S)`` image (the conditioner's input).
            class_ids: ``(B,)`` labels choosing the class adapters (training); ``None``: the router chooses.
            maps: in eval mode, make the anomaly maps and scores (a loss or activations alone need none).

        Returns:
            See :meth:`forward`.
        """
        images = self._inputs(inputs)
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise ValueError(f"features lack modalities {missing}")
        if self.feature_norm is not None:
            features = {m: self.feature_norm(m, features[m]) for m in self.modalities}
        conditioned = self.conditioner(images) if self.conditioner is not None else None
        clean = torch.cat([features[m] for m in self.modalities], dim=1)
        route = None
        if self.router is not None:
            route = class_ids if class_ids is not None else self.router(clean)
        outputs: dict[str, Tensor] = {}
        recons = []
        for modality in self.modalities:
            feature = features[modality]
            if self.training and self.jitter_scale > 0 and self.jitter_prob > 0:
                feature = feature_jitter(feature, self.jitter_scale, self.jitter_prob)
            cond = conditioned["cond"][modality] if conditioned is not None else None
            recons.append(self.reconstructions[modality](feature, cond, route)[0])
            if conditioned is not None:
                outputs[f"logits_{modality}"] = conditioned["logits"][modality]
        fused = self.fusion(recons)
        outputs["feature"] = clean
        if route is not None:
            outputs["route"] = route
        outputs.update(fused)
        if self.training or not maps:  # maps are for evaluation only
            return outputs
        # Maps and scores in float32 whatever the autocast precision of the networks before them.
        with torch.no_grad(), torch.autocast(device_type=clean.device.type, enabled=False):
            outputs.update(
                self.discriminator(
                    fused["feature_rec"].detach().float(), clean.float(), (self.image_size, self.image_size),
                    self.channel_splits,
                )
            )
            if self.map_fusion is not None:  # the fused map from the standardised per-modality maps
                fused_map = self.map_fusion({m: outputs[f"anomaly_map_{m}"] for m in self.modalities}, route)
                outputs["anomaly_map"] = fused_map
                outputs["image_score"] = self.discriminator.image_score(fused_map)
            if self.score_region == "object":
                outputs.update(self._scored_on_object(outputs, inputs))
        return outputs

    def _scored_on_object(self, outputs: Mapping[str, Tensor], inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Every ``anomaly_map*`` kept on ``inputs["foreground"]`` ``(B, 1, S, S)``, and its ``image_score*`` anew."""
        region = inputs.get("foreground")
        if region is None:
            raise ValueError("model.score_region is 'object' but the inputs have no 'foreground' (the object footprint "
                             "the dataset adds when asked, datasets.footprint)")
        scored = {}
        for key in [k for k in outputs if k.startswith("anomaly_map")]:
            scored[key] = keep_on_region(outputs[key], region.to(outputs[key].dtype))
            scored[key.replace("anomaly_map", "image_score")] = self.discriminator.image_score(scored[key])
        return scored

    def forward(
        self,
        inputs: Mapping[str, Tensor],
        features: Mapping[str, Tensor] | None = None,
        class_ids: Tensor | None = None,
        maps: bool = True,
    ) -> dict[str, Tensor]:
        """Full forward pass (or everything after the frozen part when ``features`` are given).

        Args:
            inputs: modality → ``(B, 3, S, S)`` image normalised with the backbone's ``input_mean``/``input_std``
                (``"rgb"``: the colour image, ``"depth"``: the depth image of :mod:`datasets.depth`); every
                modality of ``modalities`` must be there, others are ignored; with ``score_region="object"``
                also ``"foreground"`` ``(B, 1, S, S)`` 0/1 (eval mode).
            features: cached :meth:`extract_features` output; skips the backbone (used by the trainer's
                feature cache, and through DDP's wrapper, which only calls ``forward``).
            class_ids: ``(B,)`` labels choosing the class adapters (training with class adapters), or ``None``.
            maps: in eval mode, make the anomaly maps and scores (``False``: losses and activations only).

        Returns:
            ``"feature"`` clean (standardised, with ``feature_norm``) features ``(B, C_total, h, w)``;
            ``"feature_rec"`` ``F^g`` (same shape);
            ``"logits_<m>"`` ``(B, K)`` conditioner logits (with a conditioner); ``"ib_teacher"``,
            ``"ib_student"`` ``(B, K)`` and ``"ib_temperature"`` 0-d (IB fusion); ``"anomaly_map"``
            ``(B, 1, S, S)``, ``"image_score"`` ``(B,)`` and their per-modality ``"_<m>"`` variants (the maps
            and scores in eval mode only); ``"route"`` ``(B,)`` the class adapters used (with class adapters).
        """
        if features is None:
            features = self.extract_features(inputs)
        return self.forward_from_features(features, inputs, class_ids, maps)
