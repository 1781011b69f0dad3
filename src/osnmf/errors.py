"""Errors raised by osnmf.

Every error a user can cause derives from :class:`OsnmfError`; the CLI prints its message as one
line and exits with code 2. Messages say what is wrong, where, and what to do.
"""


class OsnmfError(Exception):
    """Base class of every user-facing osnmf error."""


class InputError(OsnmfError, ValueError):
    """An input file or array is malformed or inconsistent (names the file and the problem)."""


class InputTypeError(InputError, TypeError):
    """An input array holds values that are not numbers (e.g. Python objects)."""


class ConfigError(OsnmfError, ValueError):
    """A configuration value or option is invalid."""


class NonFiniteFitError(OsnmfError, ArithmeticError):
    """An NMF fit produced NaN or infinity; the message names K, the replicates, the iteration and
    the cause. ``replicates``: their indices in the batch that was fitted (the caller may rename
    them); ``iteration``: 0 for a non-finite start."""

    def __init__(self, message: str, replicates=(), iteration: int = 0, cause: str = ""):
        super().__init__(message)
        self.replicates, self.iteration, self.cause = tuple(int(r) for r in replicates), int(iteration), cause


class DownloadError(OsnmfError):
    """A download failed after all retries."""


class OsnmfWarning(UserWarning):
    """Something a user can act on (the CLI shows it as one ``warning:`` line)."""


class OsnmfDeprecationWarning(OsnmfWarning, FutureWarning):
    """An old setting name or flag that still works; the message names its replacement."""
