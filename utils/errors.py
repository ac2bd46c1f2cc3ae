"""Errors that the entry points turn into one readable line and a non-zero exit code.

Library code raises these (or ``ValueError`` for programming errors on in-memory data); the
entry points catch :class:`IUMADError` and print ``error: <message>`` with exit code 2.
"""

import sys

__all__ = ["report_error", "IUMADError", "ConfigError", "DataError", "CheckpointError", "WeightsUnavailableError"]


class IUMADError(Exception):
    """Base class of every error a user can cause and fix (bad file, bad config, missing checkpoint)."""


class ConfigError(IUMADError):
    """A config file or ``--opts`` override is invalid (unknown key, wrong type, bad value)."""


class DataError(IUMADError):
    """A dataset file or folder is missing, corrupt, or in an unexpected layout. Names the file."""


class CheckpointError(IUMADError):
    """A checkpoint is missing, unreadable, or was written by another config/architecture."""


class WeightsUnavailableError(IUMADError):
    """Pretrained backbone weights were requested but cannot be loaded (e.g. no network)."""


def report_error(exc: IUMADError) -> int:
    """Print ``error: <message>`` to stderr for the user and return the entry points' exit code, 2."""
    print(f"error: {exc}", file=sys.stderr)
    return 2
