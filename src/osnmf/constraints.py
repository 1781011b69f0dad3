"""Constraints on a parameter's value, scikit-learn style: an interval, a set of choices, or a rule.

Each kind has one validator, :meth:`check`, that returns the value (a rule may normalise it) or
raises a one-line :class:`~osnmf.errors.ConfigError` naming the parameter and the value:
``n_jobs=0: must be >= 1``, ``solver='fast': choose one of auto, exact, compressed``.
:mod:`osnmf.params_table` gives each run parameter one of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import Any

from osnmf.errors import ConfigError

__all__ = ["Check", "Interval", "Options"]


@dataclass(frozen=True)
class Interval:
    """A real number between ``low`` and ``high`` (None: unbounded); ``closed`` says which ends
    belong to it ("left", "right", "both", "neither"). ``why`` is added to the message."""

    low: float | None = None
    high: float | None = None
    closed: str = "left"
    why: str = ""

    def describe(self) -> str:
        if self.high is None:
            return f">= {self.low}" if self.closed in ("left", "both") else f"> {self.low}"
        if self.low is None:
            return f"<= {self.high}" if self.closed in ("right", "both") else f"< {self.high}"
        left = "[" if self.closed in ("left", "both") else "("
        right = "]" if self.closed in ("right", "both") else ")"
        return f"in {left}{self.low}, {self.high}{right}"

    def check(self, name: str, value: Any) -> Any:
        ok = isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(value)
        if ok and self.low is not None:
            ok = value >= self.low if self.closed in ("left", "both") else value > self.low
        if ok and self.high is not None:
            ok = value <= self.high if self.closed in ("right", "both") else value < self.high
        if not ok:
            raise ConfigError(f"{name}={value!r}: must be {self.describe()}" + (f" ({self.why})" if self.why else ""))
        return value


@dataclass(frozen=True)
class Options:
    """One of the listed values."""

    choices: tuple[Any, ...]

    def check(self, name: str, value: Any) -> Any:
        if value not in self.choices:
            raise ConfigError(f"{name}={value!r}: choose one of {', '.join(map(str, self.choices))}")
        return value


@dataclass(frozen=True)
class Check:
    """A rule written as a function ``rule(value) -> value`` that raises :class:`ConfigError` itself
    (its message is kept); ``choices`` are the values a command line offers, if it offers a list."""

    rule: Callable[[Any], Any]
    choices: tuple[str, ...] = ()

    def check(self, name: str, value: Any) -> Any:
        return self.rule(value)
