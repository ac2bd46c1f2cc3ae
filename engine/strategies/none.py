"""``incremental.regularizer.type: none``: plain fine-tuning with the paper's losses."""

from engine.strategies.registry import Strategy, register_strategy

__all__ = ["FineTuning"]


@register_strategy("none")
class FineTuning(Strategy):
    """Every step trains on its own classes' data only, with the step's default optimizer."""
