"""What CI provides can never be skipped silently: ``OSNMF_REQUIRE_TORCH=1`` (set by ``.ci/run``
after installing torch) turns the torch tests' skip into a failure, ``OSNMF_REQUIRE_DATA=1`` the
reference-data tests' skip (no ../shared)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("required", [False, True])
def test_missing_torch_fails_when_required(tmp_path, required):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    # what an environment without torch raises on "import torch"
    (shadow / "torch.py").write_text('raise ModuleNotFoundError("torch hidden by the test", name="torch")\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSNMF_REQUIRE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(shadow), *filter(None, [env.get("PYTHONPATH")])])
    if required:
        env["OSNMF_REQUIRE_TORCH"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(TESTS / "test_nmf_torch.py")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    out = proc.stdout + proc.stderr
    if required:
        assert proc.returncode != 0 and "torch hidden by the test" in out, out[-2000:]
        assert "skipped" not in out
    else:
        assert proc.returncode in (0, 5), out[-2000:]  # 5: every test of the run was skipped
        assert "1 skipped" in out and "optional torch backend" in out


@pytest.mark.parametrize("required", [False, True])
def test_missing_reference_data_fails_when_required(tmp_path, required):
    """Without ../shared the reference-data tests skip with one reason; ``OSNMF_REQUIRE_DATA=1``
    (set by ``.ci/run``) makes that a failure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSNMF_REQUIRE_")}
    env["OSNMF_SHARED"] = str(tmp_path / "no-shared")
    if required:
        env["OSNMF_REQUIRE_DATA"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
           str(TESTS / "test_packaged_resources.py")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    out = proc.stdout + proc.stderr
    if required:
        assert proc.returncode != 0 and "OSNMF_REQUIRE_DATA=1 but the reference data folder" in out, out[-2000:]
        assert "skipped" not in out
    else:
        assert proc.returncode in (0, 5), out[-2000:]
        assert "3 skipped" in out and "no reference data: ../shared not beside the repo" in out
