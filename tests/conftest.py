"""Shared fixtures. Tests may read ../shared (reference data); package code never does."""

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("OSNMF_SHARED") or Path(__file__).resolve().parents[2] / "shared")
NO_DATA = "no reference data: ../shared not beside the repo (set OSNMF_SHARED=path)"
PACKAGED = Path(__file__).resolve().parents[1] / "src" / "osnmf" / "resources"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The reference data folder (``../shared`` beside the repo, or ``$OSNMF_SHARED``).

    Without it the tests that need real Allen grids skip with one reason, so a clone anywhere runs
    the README's test line green; ``OSNMF_REQUIRE_DATA=1`` (set by ``.ci/run``) makes a missing
    folder a failure, so CI can never skip them.
    """
    if (SHARED / "data").is_dir():
        return SHARED
    if os.environ.get("OSNMF_REQUIRE_DATA") == "1":
        pytest.fail(f"OSNMF_REQUIRE_DATA=1 but the reference data folder {SHARED} is missing", pytrace=False)
    pytest.skip(NO_DATA)


def reference_file(shared: str, packaged: str) -> Path:
    """A reference file the package also ships unmodified (src/osnmf/resources/PROVENANCE.md):
    the ``../shared`` copy when there is one, else the packaged copy, read by the tests as raw bytes.
    ``tests/test_packaged_resources.py`` checks both copies agree where ``../shared`` exists."""
    path = SHARED / "data" / shared
    return path if path.is_file() else PACKAGED / packaged


@pytest.fixture(scope="session")
def atlas():
    import osnmf

    return osnmf.Atlas.default()


NO_BROWSER = "no Chromium: run .ci/install-browser"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless Chromium binary for the report checks.

    Without one the browser tests skip with one reason (a fresh machine runs the README's test
    line green); ``OSNMF_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes a missing browser a failure,
    so CI can never skip them.
    """
    from browser_check import BrowserError, chromium_path

    try:
        return chromium_path()
    except BrowserError as exc:
        if os.environ.get("OSNMF_REQUIRE_BROWSER") == "1":
            pytest.fail(f"OSNMF_REQUIRE_BROWSER=1 but {exc}", pytrace=False)
        pytest.skip(NO_BROWSER)
