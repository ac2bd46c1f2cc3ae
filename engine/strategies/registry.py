"""Registry of incremental strategies (``incremental.regularizer.type``) and their option schemas.

A strategy is a :class:`~engine.hooks.HookBase` that may also carry state from one step to the
next (saved in every checkpoint). It registers under a name with the options it takes; the config
schema checks ``incremental.regularizer`` against them, so an option its type does not take is an
error. A new strategy is one module in this package (or a test file) with::

    @register_strategy("name")
    class MyStrategy(Strategy):
        OPTIONS = {"alpha": Field(float, 0.1, bounds=(0, 1))}
"""

from __future__ import annotations

from typing import Any, ClassVar

from engine.hooks import HookBase
from utils.config import Field
from utils.errors import ConfigError

__all__ = ["Strategy", "STRATEGIES", "REMOVED_STRATEGIES", "register_strategy", "strategy_options", "build_strategy"]

#: name → strategy class; filled by :func:`register_strategy`.
STRATEGIES: dict[str, type[Strategy]] = {}

#: Names of earlier versions → why they are gone and what to use instead.
REMOVED_STRATEGIES = {
    "gradient_projection": "it projected the input side of the FFN output layers under AdamW, which is not IUF's "
    "update, and forgot as much as plain fine-tuning; use 'iuf', the release's update",
}


class Strategy(HookBase):
    """An incremental strategy: hooks of a step plus state carried across steps.

    Args:
        **options: the options of :attr:`OPTIONS`, checked and with defaults filled by the config schema.
    """

    OPTIONS: ClassVar[dict[str, Field]] = {}
    name: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def carried_state(self) -> dict[str, Any]:
        """What the next steps need (saved in every checkpoint of the run, e.g. activation bases)."""
        return {}

    def load_carried_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`carried_state` (when a step starts from a checkpoint)."""


def register_strategy(name: str):
    """Class decorator: register a :class:`Strategy` subclass as ``incremental.regularizer.type: name``."""

    def register(cls: type[Strategy]) -> type[Strategy]:
        if name in STRATEGIES and STRATEGIES[name] is not cls:
            raise ValueError(f"incremental strategy '{name}' is registered twice ({STRATEGIES[name]} and {cls})")
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return register


def strategy_options() -> dict[str, dict[str, Field]]:
    """Strategy name → the option fields it takes (the schema of ``incremental.regularizer``)."""
    return {name: dict(cls.OPTIONS) for name, cls in STRATEGIES.items()}


def build_strategy(cfg: dict[str, Any]) -> Strategy:
    """The strategy of a validated ``incremental.regularizer`` section (``type`` plus its options)."""
    options = dict(cfg)
    kind = options.pop("type")
    if kind not in STRATEGIES:
        names = ", ".join(sorted(STRATEGIES))
        raise ConfigError(f"incremental.regularizer.type: unknown '{kind}'; registered: {names}")
    return STRATEGIES[kind](**options)
