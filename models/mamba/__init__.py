"""Mamba decoder of the paper: selective scan, ES2D, ESSM blocks and the conditioner built from them."""

from models.mamba.decoder import MambaDecoder
from models.mamba.es2d import ES2D
from models.mamba.essm import ESSMBlock
from models.mamba.selective_scan import selective_scan

__all__ = ["ES2D", "ESSMBlock", "MambaDecoder", "selective_scan"]
