"""Incremental strategies: what keeps a step from overwriting what earlier steps learned.

Every module of this package is imported here, so a strategy registers by being a file in it
(:func:`~engine.strategies.registry.register_strategy`). Built in: ``none`` (plain fine-tuning),
``ema_pull`` (a pull toward the previous step's weights after every epoch) and ``iuf`` (the
release's update: per-iteration pull, clipped SGD at lr 1, output-side gradient projection).
Class-adapter isolation (:mod:`engine.strategies.class_adapters`) is a hook the run adds itself
when the model has class adapters.
"""

import importlib
import pkgutil

from engine.strategies.registry import (
    REMOVED_STRATEGIES,
    STRATEGIES,
    Strategy,
    build_strategy,
    register_strategy,
    strategy_options,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REMOVED_STRATEGIES", "STRATEGIES", "Strategy", "build_strategy", "register_strategy", "strategy_options"]
