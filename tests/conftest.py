"""Shared fixtures. Tests may read ../shared (reference data); package code never does."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        raise RuntimeError(f"reference data folder {SHARED} is missing (expected beside the repo)")
    return SHARED


@pytest.fixture(scope="session")
def atlas():
    import osnmf

    return osnmf.Atlas.default()
