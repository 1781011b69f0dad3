"""`osnmf info PATH [--json]` on every supported input, checked against counts computed
independently from the raw bytes of the Allen files.
"""

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from osnmf.cli import app
from osnmf.io.load import load_expression
from osnmf.io.npz import write_npz

REAL = {"74272479": "Nrp1", "71717084": "Pdyn"}
DIMS = (67, 41, 58)


def _raw(zip_path: Path, member: str, dtype: str) -> np.ndarray:
    with zipfile.ZipFile(zip_path) as zf:
        flat = np.frombuffer(zf.read(member), dtype=dtype)
    return flat.reshape(DIMS[::-1]).transpose(2, 1, 0)  # x (AP) fastest in the file


@pytest.fixture(scope="module")
def expected(shared_dir):
    """Counts from the raw bytes: brain = annotation > 0; missing = -1 inside the brain."""
    aba = shared_dir / "data/aba"
    brain = _raw(aba / "P56_Mouse_gridAnnotation.zip", "gridAnnotation.raw", "<u4") > 0
    grids = [_raw(aba / "energy" / f"{i}.zip", "energy.raw", "<f4") for i in REAL]
    missing = sum(int((g[brain] == -1).sum()) for g in grids)
    return {"n_brain_voxels": int(brain.sum()), "missing": missing, "grids": grids, "brain": brain}


@pytest.fixture(scope="module")
def real_folder(shared_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "aba"
    (folder / "energy").mkdir(parents=True)
    for exp_id in REAL:
        shutil.copy(shared_dir / "data/aba/energy" / f"{exp_id}.zip", folder / "energy")
    (folder / "experiments.csv").write_text(
        "section_data_set_id,gene_symbol\n" + "".join(f"{i},{g}\n" for i, g in REAL.items())
    )
    return folder


def _info_json(path: Path) -> dict:
    result = CliRunner().invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_info_json_folder(real_folder, expected):
    s = _info_json(real_folder)
    assert s["n_experiments"] == 2 and s["n_genes"] == 2
    assert s["n_brain_voxels"] == expected["n_brain_voxels"] == 62529
    assert s["missing_fraction"] == pytest.approx(expected["missing"] / (2 * expected["n_brain_voxels"]))
    inside = np.concatenate([g[expected["brain"]] for g in expected["grids"]])
    assert s["value_max"] == pytest.approx(float(inside.max()))
    assert s["value_min"] == pytest.approx(float(inside[inside != -1].min()))
    assert s["grid_shape"] == list(DIMS) and s["spacing_um"] == [200.0, 200.0, 200.0]


def test_info_text(real_folder):
    result = CliRunner().invoke(app, ["info", str(real_folder)])
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    lines = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in rows)}
    assert set(lines) >= {"n_experiments", "n_genes", "n_brain_voxels", "missing_fraction", "hemispheres_right_only"}
    assert lines["n_experiments"] == "2"
    assert len({line.index(":") for line in rows}) == 1  # every key aligned on one colon column
    assert not re.search(r"\.\d{7,}", result.stdout)  # 4 significant digits, not 17
    s = _info_json(real_folder)
    assert float(lines["missing_fraction"]) == pytest.approx(s["missing_fraction"], rel=1e-3)
    assert lines["grid_shape"] == "67 × 41 × 58"


def test_info_npz_and_h5ad_agree(real_folder, expected, tmp_path):
    from osnmf.io.anndata_io import write_h5ad

    expr = load_expression(real_folder)
    write_npz(tmp_path / "x.npz", expr)
    write_h5ad(tmp_path / "x.h5ad", expr)
    want = expected["missing"] / (2 * expected["n_brain_voxels"])
    for name in ("x.npz", "x.h5ad"):
        s = _info_json(tmp_path / name)
        assert (s["n_experiments"], s["n_genes"], s["n_brain_voxels"]) == (2, 2, 62529)
        assert s["missing_fraction"] == pytest.approx(want)


def test_info_subprocess_single_zip(shared_dir, expected, tmp_path):
    exe = Path(sys.executable).with_name("osnmf")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "osnmf.cli"]
    zip_path = shared_dir / "data/aba/energy/71717084.zip"
    proc = subprocess.run([*cmd, "info", str(zip_path), "--json"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    grid = expected["grids"][1]
    brain = expected["brain"]
    assert (s["n_experiments"], s["n_genes"], s["n_brain_voxels"]) == (1, 1, 62529)
    assert s["missing_fraction"] == pytest.approx(float((grid[brain] == -1).mean()))
    assert not list(tmp_path.iterdir())


def test_help_lists_info():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "info" in result.stdout


@pytest.mark.parametrize(("recipe", "flag", "toml", "expected"), [
    (None, None, None, False), (None, "false", None, False), ("fast", None, None, "only"),
    ("fast", "true", None, True), ("fast", None, "grow = false", False), ("fast", None, 'grow = "only"', "only"),
    ("fast", "only", "grow = true", "only"),
])
def test_grow_reaches_the_sweep(recipe, flag, toml, expected, tmp_path, monkeypatch):
    """``--grow`` / TOML ``grow`` arrive in StaNMF as the API's value (flags override the file; the
    default recipe, the paper's, fits every replicate cold)."""
    from osnmf.factorize import stanmf

    seen = {}

    def stop(self, X, y=None):
        seen["grow"] = self._recipe()["grow"]
        raise KeyboardInterrupt  # nothing after the sweep is needed here

    monkeypatch.setattr(stanmf.StaNMF, "fit", stop)
    args = ["run", "--out", str(tmp_path / "out"), "--quiet", "--k-min", "3", "--k-max", "4", "--n-replicates", "2"]
    if flag is not None:
        args += ["--grow", flag]
    if recipe is not None:
        args += ["--recipe", recipe]
    if toml is not None:
        (tmp_path / "run.toml").write_text(toml + "\nphantom_genes = 40\nphantom_patterns = 3\n")
        args += ["--config", str(tmp_path / "run.toml")]
    else:
        args += ["--config", str(_small_toml(tmp_path))]
    CliRunner().invoke(app, args)
    assert seen.get("grow") == expected and type(seen.get("grow")) is type(expected)


def _small_toml(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text("phantom_genes = 40\nphantom_patterns = 3\n")
    return path
