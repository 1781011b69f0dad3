"""What a pipeline stage reads from the run's configuration, declared once per stage.

A stage names the :class:`~osnmf.config.RunConfig` fields its result depends on (``key``: they make
its cache key) and those that only say how to compute it (``runtime``: threads, scheduler, device;
not in the key). Its body reads the configuration through a :class:`ConfigView` that holds only
those names, so reading an undeclared one fails at once instead of leaving it out of the key (a
rerun with a new value would reuse the old result).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ConfigView", "StageInputs", "UndeclaredRead"]


class UndeclaredRead(AttributeError):
    """A stage read a configuration field it did not declare (a bug in the stage, not in the input)."""


@dataclass(frozen=True)
class StageInputs:
    """The configuration fields one stage reads."""

    key: tuple[str, ...] = ()  # the result depends on them: they make the cache key
    runtime: tuple[str, ...] = ()  # how to compute (threads, scheduler, device): read, not keyed

    def view(self, stage: str, config: Any, resolved: Mapping[str, Any] | None = None) -> ConfigView:
        return ConfigView(stage, config, self, resolved)


class ConfigView:
    """``config`` seen by one stage: its declared fields read as attributes, any other raises
    :class:`UndeclaredRead`. ``resolved`` overrides fields with the values they resolve to (a
    recipe's settings where the field was left unset). :meth:`key_values` gives the keyed fields'
    values for the cache key."""

    __slots__ = ("_config", "_inputs", "_resolved", "_stage")

    def __init__(self, stage: str, config: Any, inputs: StageInputs, resolved: Mapping[str, Any] | None = None):
        self._stage, self._config, self._inputs, self._resolved = stage, config, inputs, dict(resolved or {})
        for name in (*inputs.key, *inputs.runtime):
            self._value(name)  # a declared name that does not exist is a bug too

    def _value(self, name: str) -> Any:
        return self._resolved[name] if name in self._resolved else getattr(self._config, name)

    def __getattr__(self, name: str) -> Any:
        inputs = self._inputs
        if name in inputs.key or name in inputs.runtime:
            return self._value(name)
        raise UndeclaredRead(f"stage {self._stage!r} reads config.{name} without declaring it: add it to the "
                             "stage's key fields (or runtime fields, when it does not change the result)")

    def key_values(self) -> dict[str, Any]:
        """``{field: value}`` of the keyed fields, in declaration order."""
        return {name: self._value(name) for name in self._inputs.key}
