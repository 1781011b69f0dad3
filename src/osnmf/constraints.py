"""Constraints on a parameter's value, scikit-learn style: an interval of integers or of real
numbers, a set of choices, or a rule.

Each kind has one validator, :meth:`check`, that returns the value (normalised: an integer as
``int``, a real as ``float``, a rule's own spelling) or raises a one-line :class:`~osnmf.errors.ConfigError` in the one
format of every osnmf setting, ``name=value: must be ...``:
``n_replicates=2.5: must be an integer >= 2 (instability needs at least 2 replicates)``,
``tol=-1: must be a number >= 0``, ``solver='fast': must be one of auto, exact, compressed``.
:mod:`osnmf.params_table` gives each run parameter one of them; the factorize layer's public
functions check their own arguments with the same objects (:mod:`osnmf.factorize.checks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from osnmf.errors import ConfigError

__all__ = ["POSITIVE", "SEED", "Check", "Interval", "Options", "refuse"]


def refuse(name: str, value: Any, must: str) -> ConfigError:
    """The one message format: ``name=value: must be <must>``."""
    return ConfigError(f"{name}={value!r}: must be {must}")


@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` (:class:`numbers.Integral` or :class:`numbers.Real`) between ``low`` and
    ``high`` (None: unbounded); ``closed`` says which ends belong to it ("left", "right", "both",
    "neither"). Booleans and NaN are refused; a real must be finite. ``why`` is added to the message."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "left"
    why: str = ""

    def describe(self) -> str:
        what = "an integer" if self.kind is Integral else "a number"
        if self.low is None and self.high is None:
            return what
        if self.high is None:
            return f"{what} >= {self.low}" if self.closed in ("left", "both") else f"{what} > {self.low}"
        if self.low is None:
            return f"{what} <= {self.high}" if self.closed in ("right", "both") else f"{what} < {self.high}"
        left = "[" if self.closed in ("left", "both") else "("
        right = "]" if self.closed in ("right", "both") else ")"
        return f"{what} in {left}{self.low}, {self.high}{right}"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        if self.kind is not Integral and not math.isfinite(value):
            return False
        if self.low is not None and not (value >= self.low if self.closed in ("left", "both") else value > self.low):
            return False
        return self.high is None or (value <= self.high if self.closed in ("right", "both") else value < self.high)

    def check(self, name: str, value: Any) -> Any:
        if not self.accepts(value):
            raise refuse(name, value, self.describe() + (f" ({self.why})" if self.why else ""))
        return int(value) if self.kind is Integral else float(value)


@dataclass(frozen=True)
class Options:
    """One of the listed values."""

    choices: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.choices))

    def check(self, name: str, value: Any) -> Any:
        if not isinstance(value, str | type(None)) or value not in self.choices:
            raise refuse(name, value, self.describe())
        return value


@dataclass(frozen=True)
class Check:
    """A rule ``rule(value) -> value`` (it may normalise) that raises ``ValueError`` or
    ``TypeError`` on a refused value; the message is the one format with ``description``.
    ``choices`` are the values a command line offers, if it offers a list."""

    rule: Callable[[Any], Any]
    description: str
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        return self.description

    def check(self, name: str, value: Any) -> Any:
        try:
            return self.rule(value)
        except (TypeError, ValueError):
            raise refuse(name, value, self.description) from None


#: a positive integer (a count: jobs, neighbours, iterations)
POSITIVE = Interval(Integral, 1)
#: a numpy random seed (``np.random.default_rng`` and scikit-learn's ``random_state`` take these)
SEED = Interval(Integral, 0, 2**32 - 1, closed="both", why="a numpy seed")
