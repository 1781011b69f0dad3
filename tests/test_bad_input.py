"""Every bad input of issue 2 item 7 (and a few more): one InputError line naming the file; the CLI
exits 2 with that one line on stderr, no traceback, and writes nothing.
"""

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from osnmf import cli
from osnmf.errors import InputError
from osnmf.formats.metaimage import encode_mhd
from osnmf.io.load import load_expression

SHAPE = (67, 41, 58)


def _volume(shape=SHAPE) -> np.ndarray:
    rng = np.random.default_rng(0)
    vol = rng.gamma(2.0, 1.0, size=shape).astype("<f4")
    vol[5] = -1.0  # a missing coronal section is fine
    return vol


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def grid_members(vol=None, dims=None, etype=None, raw=None, kind="energy") -> dict[str, bytes]:
    """An Allen grid zip's members, optionally with a wrong DimSize/ElementType or other raw bytes."""
    vol = _volume() if vol is None else vol
    mhd = encode_mhd(vol.shape, vol.dtype, f"{kind}.raw")
    if dims is not None:
        mhd = mhd.replace(f"DimSize = {' '.join(map(str, vol.shape))}", f"DimSize = {dims}")
    if etype is not None:
        mhd = mhd.replace("ElementType = MET_FLOAT", f"ElementType = {etype}")
    raw = vol.tobytes(order="F") if raw is None else raw
    return {f"{kind}.mhd": mhd.encode(), f"{kind}.raw": raw}


def make_folder(root: Path, rows=(("1001", "Gad1"),), zips=None, csv: str | None = None) -> Path:
    """A valid ABA grid folder, then overridden by ``zips`` (id -> bytes) and ``csv`` text."""
    folder = root / "aba"
    (folder / "energy").mkdir(parents=True)
    text = "section_data_set_id,gene_symbol,plane\n" + "".join(f"{i},{g},coronal\n" for i, g in rows)
    (folder / "experiments.csv").write_text(text if csv is None else csv)
    zips = {i: _zip_bytes(grid_members()) for i, _ in rows} if zips is None else zips
    for exp_id, data in zips.items():
        (folder / "energy" / f"{exp_id}.zip").write_bytes(data)
    return folder


def _with_values(values: float) -> dict[str, bytes]:
    vol = _volume()
    vol[30, 20, 10] = values
    return {"1001": _zip_bytes(grid_members(vol))}


def _float_annotation(folder: Path) -> Path:
    ann = np.ones(SHAPE, "<f4")
    (folder / "P56_Mouse_gridAnnotation.zip").write_bytes(
        _zip_bytes({"gridAnnotation.mhd": encode_mhd(SHAPE, ann.dtype, "gridAnnotation.raw").encode(),
                    "gridAnnotation.raw": ann.tobytes(order="F")})
    )
    return folder


# name -> (builder(tmp) -> path given to `osnmf info`, file the message must name (relative to tmp),
#          words the message must contain)
CASES = {
    "no_experiments_csv": (
        lambda t: (make_folder(t), (t / "aba/experiments.csv").unlink())[0],
        "aba/experiments.csv", ["not found"]),
    "empty_csv": (lambda t: make_folder(t, csv=""), "aba/experiments.csv", ["empty"]),
    "columnless_csv": (lambda t: make_folder(t, csv="id,gene\n1001,Gad1\n"), "aba/experiments.csv",
                       ["missing column", "section_data_set_id"]),
    "header_only_csv": (lambda t: make_folder(t, csv="section_data_set_id,gene_symbol\n"),
                        "aba/experiments.csv", ["no experiments"]),
    "duplicate_ids": (lambda t: make_folder(t, rows=(("1001", "Gad1"), ("1001", "Sst"))),
                      "aba/experiments.csv", ["duplicate", "1001"]),
    "listed_id_without_zip": (
        lambda t: make_folder(t, rows=(("1001", "Gad1"), ("1002", "Sst")),
                              zips={"1001": _zip_bytes(grid_members())}),
        "aba/energy/1002.zip", ["missing", "line 3"]),
    "not_a_zip": (lambda t: make_folder(t, zips={"1001": b"<html>404 not found</html>"}),
                  "aba/energy/1001.zip", ["not a zip"]),
    "zip_without_raw": (
        lambda t: make_folder(t, zips={"1001": _zip_bytes({"energy.mhd": grid_members()["energy.mhd"]})}),
        "aba/energy/1001.zip", ["no energy.raw"]),
    "truncated_raw": (
        lambda t: make_folder(t, zips={"1001": _zip_bytes(grid_members(raw=_volume().tobytes("F")[:-1000]))}),
        "aba/energy/1001.zip", ["bytes", "truncated"]),
    "dimsize_vs_data": (lambda t: make_folder(t, zips={"1001": _zip_bytes(grid_members(dims="67 41 57"))}),
                        "aba/energy/1001.zip", ["DimSize 67 41 57"]),
    "dimsize_vs_annotation": (
        lambda t: make_folder(t, zips={"1001": _zip_bytes(grid_members(_volume((66, 40, 57))))}),
        "aba/energy/1001.zip", ["(66, 40, 57)", "annotation"]),
    "spacing_vs_annotation": (
        lambda t: make_folder(t, zips={"1001": _zip_bytes({
            **grid_members(),
            "energy.mhd": grid_members()["energy.mhd"].replace(b"ElementSpacing = 200 200 200",
                                                               b"ElementSpacing = 100 100 100")})}),
        "aba/energy/1001.zip", ["spacing", "100 × 100 × 100", "200 × 200 × 200"]),
    "single_zip_spacing": (
        lambda t: (t / "1001.zip").write_bytes(_zip_bytes({
            **grid_members(),
            "energy.mhd": grid_members()["energy.mhd"].replace(b"ElementSpacing = 200 200 200",
                                                               b"ElementSpacing = 25 25 25")})) and t / "1001.zip",
        "1001.zip", ["spacing", "25 × 25 × 25"]),
    "plane_not_coronal_or_sagittal": (
        lambda t: make_folder(t, csv="section_data_set_id,gene_symbol,plane\n1001,Gad1,axial\n"),
        "aba/experiments.csv", ["'axial'", "line 2", "coronal or sagittal"]),
    "elementtype_vs_data": (
        lambda t: make_folder(t, zips={"1001": _zip_bytes(grid_members(etype="MET_DOUBLE"))}),
        "aba/energy/1001.zip", ["ElementType MET_DOUBLE"]),
    "elementtype_integer": (
        lambda t: make_folder(t, zips={"1001": _zip_bytes(grid_members(etype="MET_UINT"))}),
        "aba/energy/1001.zip", ["ElementType", "MET_FLOAT"]),
    "annotation_not_integer": (lambda t: _float_annotation(make_folder(t)),
                               "aba/P56_Mouse_gridAnnotation.zip", ["integer structure ids"]),
    "nan_values": (lambda t: make_folder(t, zips=_with_values(np.nan)), "aba/energy/1001.zip", ["NaN"]),
    "inf_values": (lambda t: make_folder(t, zips=_with_values(np.inf)), "aba/energy/1001.zip", ["infinite"]),
    "negative_values": (lambda t: make_folder(t, zips=_with_values(-0.5)), "aba/energy/1001.zip",
                        ["negative", "-0.5"]),
    "member_with_dotdot": (
        lambda t: make_folder(t, zips={"1001": _zip_bytes({**grid_members(), "../../evil.sh": b"rm"})}),
        "aba/energy/1001.zip", ["unsafe", "../../evil.sh"]),
    "member_absolute": (
        lambda t: make_folder(t, zips={"1001": _zip_bytes({**grid_members(), "/etc/evil": b"x"})}),
        "aba/energy/1001.zip", ["unsafe", "/etc/evil"]),
    "single_zip_truncated": (
        lambda t: (t / "1001.zip").write_bytes(_zip_bytes(grid_members())[:-200]) and t / "1001.zip",
        "1001.zip", ["not a zip"]),
    "npz_with_objects": (
        lambda t: (np.savez(t / "x.npz", data=np.zeros((1, *SHAPE), "f4"),
                            genes=np.array([{"a": 1}], dtype=object)), t / "x.npz")[1],
        "x.npz", ["pickle"]),
    "npz_wrong_shape": (
        lambda t: (np.savez(t / "x.npz", data=np.zeros((1, 60, 41, 58), "f4"), genes=np.array(["A"])),
                   t / "x.npz")[1],
        "x.npz", ["(60, 41, 58)"]),
    "npz_negative": (
        lambda t: (np.savez(t / "x.npz", data=np.full((1, *SHAPE), -2.0, "f4"), genes=np.array(["A"])),
                   t / "x.npz")[1],
        "x.npz", ["negative"]),
    "h5ad_outside_grid": (lambda t: _h5ad(t, coords_shift=70), "x.h5ad", ["outside", "grid"]),
    "h5ad_not_hdf5": (lambda t: (t / "x.h5ad").write_text("hello") and t / "x.h5ad", "x.h5ad", ["not a readable"]),
    "unknown_format": (lambda t: (t / "x.tif").write_bytes(b"II*") and t / "x.tif", "x.tif", ["unknown"]),
    "path_not_found": (lambda t: t / "nothing_here", "nothing_here", ["not found"]),
}


def _h5ad(tmp: Path, coords_shift: int) -> Path:
    import anndata as ad

    coords = np.array([[1, 2, 3], [4, 5, 6]]) + np.array([coords_shift, 0, 0])
    adata = ad.AnnData(X=np.ones((2, 1), np.float32), obsm={"spatial": coords})
    adata.obs_names = ["a", "b"]
    adata.write_h5ad(tmp / "x.h5ad")
    return tmp / "x.h5ad"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture
def case_input(request, tmp_path):
    build, named, words = CASES[request.param]
    return build(tmp_path), tmp_path / named, words


@pytest.mark.parametrize("case_input", sorted(CASES), indirect=True)
def test_input_error_names_file(case_input):
    target, named, words = case_input
    with pytest.raises(InputError) as exc:
        load_expression(target)
    message = str(exc.value)
    assert "\n" not in message
    assert str(named) in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("case_input", sorted(CASES), indirect=True)
def test_cli_exit_2_one_line_nothing_written(case_input, tmp_path, monkeypatch, capsys):
    target, named, _ = case_input
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["osnmf", "info", str(target), "--json"])
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out, err = capsys.readouterr()
    assert exc.value.code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(named) in lines[0], err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before


def _osnmf_command() -> list[str]:
    exe = Path(sys.executable).with_name("osnmf")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "osnmf.cli"]


@pytest.mark.parametrize("case_input", ["not_a_zip", "truncated_raw", "member_with_dotdot", "duplicate_ids"],
                         indirect=True)
def test_cli_subprocess(case_input, tmp_path):
    target, named, _ = case_input
    before = snapshot(tmp_path)
    proc = subprocess.run([*_osnmf_command(), "info", str(target)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(named) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(tmp_path) == before


# ---- `osnmf run` on bad inputs: refused before anything is written ----------------------------------------------
def _npz(t: Path, name: str = "x.npz", **arrays) -> Path:
    np.savez(t / name, **arrays)
    return t / name


def _h5ad_file(t: Path, name: str, X=None, coords=((1, 2, 3), (4, 5, 6)), with_coords=True) -> Path:
    import anndata as ad

    X = np.ones((len(coords), 2), np.float32) if X is None else X
    adata = ad.AnnData(X=X, obsm={"spatial": np.array(coords)} if with_coords else None)
    adata.obs_names = [f"v{i}" for i in range(adata.n_obs)]
    adata.var_names = [f"e{i}" for i in range(adata.n_vars)]
    adata.write_h5ad(t / name)
    return t / name


def _negative_h5ad(t: Path) -> Path:
    X = np.ones((300, 2), np.float32)
    X[:200, 0] = -3.0
    coords = np.stack(np.unravel_index(np.arange(300) + 40_000, SHAPE), axis=1)
    return _h5ad_file(t, "negative.h5ad", X=X, coords=coords)


def _nan_only_h5ad(t: Path) -> Path:
    coords = np.stack(np.unravel_index(np.arange(50) + 40_000, SHAPE), axis=1)
    return _h5ad_file(t, "nan.h5ad", X=np.full((50, 6), np.nan, np.float32), coords=coords)


def _toml(t: Path, text: str) -> Path:
    (t / "bad.toml").write_text(text)
    return t / "bad.toml"


# name -> (builder(tmp) -> path, "data" or "config", file the message names (relative to tmp), words)
RUN_CASES = {
    "npz_wrong_grid": (lambda t: _npz(t, data=np.zeros((4, 60, 41, 58), "f4"), genes=np.array(list("ABCD"))),
                       "data", "x.npz", ["(60, 41, 58)"]),
    "npz_wrong_ndim": (lambda t: _npz(t, data=np.zeros((4, 41, 58, 2, 2), "f4"), genes=np.array(list("ABCD"))),
                       "data", "x.npz", ["(experiments, AP, DV, ML)"]),
    "npz_pickled": (lambda t: _npz(t, data=np.zeros((1, *SHAPE), "f4"), genes=np.array([{"a": 1}], dtype=object)),
                    "data", "x.npz", ["pickle"]),
    "npz_nan": (lambda t: _npz(t, data=np.full((4, *SHAPE), np.nan, "f4"), genes=np.array(list("ABCD"))),
                "data", "x.npz", ["NaN"]),
    "npz_all_missing": (lambda t: _npz(t, data=np.full((6, *SHAPE), -1.0, "f4"), genes=np.array(list("ABCDEF"))),
                        "data", "x.npz", ["no measured value"]),
    "npz_negative": (lambda t: _npz(t, data=np.full((4, *SHAPE), -2.0, "f4"), genes=np.array(list("ABCD"))),
                     "data", "x.npz", ["negative"]),
    "h5ad_negative": (_negative_h5ad, "data", "negative.h5ad", ["negative.h5ad:X: 200 negative values"]),
    "h5ad_nan_only": (_nan_only_h5ad, "data", "nan.h5ad", ["no measured value"]),
    "h5ad_no_coordinates": (lambda t: _h5ad_file(t, "x.h5ad", with_coords=False), "data", "x.h5ad",
                            ["obsm['spatial']"]),
    "h5ad_outside_grid": (lambda t: _h5ad_file(t, "x.h5ad", coords=((70, 2, 3), (4, 5, 6))), "data", "x.h5ad",
                          ["outside", "grid"]),
    "not_a_zip": (lambda t: (t / "x.zip").write_bytes(b"<html>404</html>") and t / "x.zip", "data", "x.zip",
                  ["not a zip"]),
    "empty_folder": (lambda t: (t / "empty").mkdir() or t / "empty", "data", "empty", ["experiments.csv"]),
    "unknown_format": (lambda t: (t / "x.tif").write_bytes(b"II*") and t / "x.tif", "data", "x.tif", ["unknown"]),
    "missing_path": (lambda t: t / "nothing_here", "data", "nothing_here", ["not found"]),
    "toml_unknown_key": (lambda t: _toml(t, "k_min = 3\nreplicate = 10\n"), "config", "bad.toml", ["unknown key"]),
    "toml_wrong_type": (lambda t: _toml(t, 'k_min = "three"\n'), "config", "bad.toml", ["k_min", "int"]),
    "toml_syntax": (lambda t: _toml(t, "k_min = = 3\n"), "config", "bad.toml", ["not valid TOML"]),
    "toml_bad_grow": (lambda t: _toml(t, 'grow = "sometimes"\n'), "config", "bad.toml", ["grow", "only"]),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_run_refuses_bad_input_and_leaves_nothing(case, tmp_path, monkeypatch, capsys):
    """`osnmf run` on each bad input: one line naming the file, exit 2, and no output folder created."""
    build, kind, named, words = RUN_CASES[case]
    target = build(tmp_path)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["osnmf", "run", f"--{kind}", str(target), "--out", str(out),
                                      "--k-min", "2", "--k-max", "3", "--n-replicates", "2", "--quiet"])
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    assert exc.value.code == 2, captured
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(tmp_path / named) in lines[0], captured.err
    for word in words:
        assert word in lines[0], lines[0]  # printed as written: ":X:" is not turned into an emoji
    assert not out.exists()
    assert snapshot(tmp_path) == before


def test_ctrl_c_says_in_one_line_that_finished_work_is_kept(tmp_path, monkeypatch, capsys):
    """Ctrl-C (KeyboardInterrupt inside a command) exits 130 with one line, no traceback; typer
    turns it into Exit(130) before our handler sees it, which used to make the exit silent."""
    import osnmf.io.load

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(osnmf.io.load, "load_expression", interrupted)
    monkeypatch.setattr(sys, "argv", ["osnmf", "info", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 130
    assert err.strip().splitlines()[-1] == cli.INTERRUPTED
    assert "Traceback" not in err


# ---- `osnmf run` on bad settings (issue 35, items 8 and 9): refused before the first file is written -------------
def _small_npz(t: Path, n: int = 4, big: float | None = None) -> Path:
    """``n`` experiments of gamma noise on the Allen grid (-1 outside a block of measured voxels)."""
    rng = np.random.default_rng(0)
    data = np.full((n, *SHAPE), -1.0, "<f4")
    data[:, 20:40, 10:30, 10:40] = rng.gamma(2.0, 1.0, size=(n, 20, 20, 30))
    if big is not None:
        data[0, 30, 20, 20] = big  # finite in float32, its square is not
    return _npz(t, "small.npz", data=data, genes=np.array([f"G{i}" for i in range(n)]))


# name -> (extra command-line words (a TOML body after "toml:"), words the one line must contain)
SETTING_CASES = {
    "random_state_negative": (["--random-state", "-1"], ["random_state=-1: must be an integer in [0, 4294967295]"]),
    "random_state_huge": (["--random-state", "99999999999999999999999"],
                          ["random_state=99999999999999999999999: must be an integer in [0, 4294967295]"]),
    "n_replicates_fraction": (["toml:n_replicates = 2.5"], ["n_replicates", "int"]),
    "moran_replicates_zero": (["toml:moran_replicates = 0"], ["moran_replicates=0: must be an integer >= 2"]),
    "n_random_models_zero": (["toml:n_random_models = 0"], ["n_random_models=0: must be an integer >= 1"]),
    "network_top_fraction_two": (["toml:network_top_fraction = 2"],
                                 ["network_top_fraction=2.0: must be a number in (0, 1]"]),
    "link_sizes_empty": (["toml:link_sizes = []"], ["link_sizes=[]: must be a non-empty list of distinct sizes"]),
    "link_sizes_four": (["toml:link_sizes = [4]"], ["link_sizes=[4]: must be", "among 1, 2, 3"]),
    "n_neighbors_beyond_the_voxels": (["toml:n_neighbors = 1000000"],
                                      ["n_neighbors=1000000: must be an integer in [1, {bound}] (the most measured "
                                       "brain voxels of an experiment in", "small.npz"]),
    "n_jobs_zero": (["--n-jobs", "0"], ["n_jobs=0: must be an integer >= 1"]),
    "too_large_values": (["big"], ["small.npz (experiment 0) has values up to 1e+20", "rescale the data"]),
}


@pytest.mark.parametrize("case", sorted(SETTING_CASES))
def test_run_refuses_bad_settings_before_writing(case, tmp_path, monkeypatch, capsys):
    """Each setting a later stage could not use is one line, exit 2, and no output folder (nor .cache,
    nor sweep) — checked when the configuration is read, or against the data when it is loaded."""
    extra, words = SETTING_CASES[case]
    data = _small_npz(tmp_path, big=1e20 if extra == ["big"] else None)
    args = ["--data", str(data)]
    for word in extra:
        if word.startswith("toml:"):
            args += ["--config", str(_toml(tmp_path, word[5:] + "\n"))]
        elif word != "big":
            args.append(word)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["osnmf", "run", *args, "--out", str(out), "--k-min", "2", "--k-max", "3",
                                      "--n-replicates", "2", "--quiet"])
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    captured = capsys.readouterr()
    assert exc.value.code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    bound = int(load_expression(data).atlas.brain_mask[20:40, 10:30, 10:40].sum())  # the measured block's
    for word in words:
        assert word.format(bound=bound) in lines[0], lines[0]
    assert not out.exists() and snapshot(tmp_path) == before
