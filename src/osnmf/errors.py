"""Errors raised by osnmf.

Every error a user can cause derives from :class:`OsnmfError`; the CLI prints its message as one
line and exits with code 2. Messages say what is wrong, where, and what to do.
"""


import errno
import os


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


class StorageError(OsnmfError):
    """A file or folder cannot be written or read: disk full, read-only, a file where a folder
    should be, a dangling link (names the path and what to do)."""


# errno -> (what it means, what to do)
_STORAGE = {
    errno.ENOSPC: ("disk full", "free space there (or choose a folder on another disk) and rerun"),
    errno.EDQUOT: ("disk quota exceeded", "free space there (or choose a folder on another disk) and rerun"),
    errno.EFBIG: ("file too large for its file system", "choose a folder on another file system"),
    errno.EROFS: (None, "choose a folder on a writable disk"),
    errno.EACCES: (None, "choose a folder you can write to, or fix its permissions"),
    errno.EPERM: (None, "choose a folder you can write to, or fix its permissions"),
    errno.ENOTDIR: ("a part of this path is a file, not a folder", "choose another path, or move that file away"),
    errno.EISDIR: ("is a folder, not a file", "name a file"),
    errno.EEXIST: ("a file (or a dangling symbolic link) is in the way of a folder",
                   "remove or rename it, or choose another path"),
    errno.ENOENT: ("not found (a missing folder or a dangling symbolic link)", "check the path"),
    errno.ELOOP: ("symbolic link loop", "fix the link or choose another path"),
}
# errors that mean a write failed, whatever else the writing code did
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def storage_error(exc: OSError, path: str | os.PathLike | None = None, own_name: bool = True) -> StorageError:
    """One line for an OSError: the path (the error's own if it has one and ``own_name``, else
    ``path``), what it means, what to do."""
    where = exc.filename if exc.filename is not None and (own_name or path is None) else path
    what, todo = _STORAGE.get(exc.errno, (None, "check the path and rerun"))
    reason = " ".join(str(exc.strerror or type(exc).__name__).split())  # one line, whatever the library said
    if len(reason) > 80 and exc.errno:
        reason = os.strerror(exc.errno)
    text = f"{what} ({reason})" if what else reason
    return StorageError(f"{os.fsdecode(where)}: {text}; {todo}" if where is not None else f"{text}; {todo}")


class OsnmfWarning(UserWarning):
    """Something a user can act on (the CLI shows it as one ``warning:`` line)."""


class OsnmfDeprecationWarning(OsnmfWarning, FutureWarning):
    """An old setting name or flag that still works; the message names its replacement."""
