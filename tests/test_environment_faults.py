"""Environment faults are one line naming the path and what to do, exit 2 (issue 35, item 10): a
full disk, a read-only folder, ``--out`` under a file, a dangling symlink, ``.cache`` that is a
file, ``--config`` naming a folder, a read-only ``project --out``. They printed "internal error …
(rerun with --debug)", exit 1, no path; a full disk during the outputs left ``.lock`` behind.

A read-only or full disk is simulated (the tests may run as root, for whom permissions do not
hold): ``os.open`` and ``os.mkdir`` fail with EROFS / ENOSPC under the chosen folder, as the kernel
would; everything above them (tempfile, numpy, pandas, h5py's file open) meets the real error.
"""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from osnmf.config import RunConfig
from osnmf.pipeline import Pipeline

TINY = dict(k_min=3, k_max=5, n_replicates=4, phantom_genes=60, phantom_patterns=4, phantom_noise=0.1,
            pca_replicates=3, moran_replicates=3, n_random_models=20, link_sizes=[1, 2], quiet=True,
            recipe="fast")
TOML = "\n".join(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in TINY.items())
REPO = Path(__file__).resolve().parents[1]


def osnmf(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from osnmf.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_line(proc, *words) -> str:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    return proc.stderr


@pytest.fixture()
def config(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TOML + "\n")
    return path


def test_out_under_a_file_a_dangling_link_and_config_naming_a_folder(tmp_path, config):
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "run")
    (tmp_path / "folder.toml").mkdir()
    before = files(tmp_path)
    one_line(osnmf("run", "--config", config, "--out", "afile/sub", cwd=tmp_path),
             "error: afile/sub: a part of this path is a file, not a folder", "move that file away")
    one_line(osnmf("run", "--config", config, "--out", "dangling", cwd=tmp_path),
             "error: dangling: ", "dangling symbolic link", "remove or rename it")
    one_line(osnmf("run", "--config", "folder.toml", "--out", "o", cwd=tmp_path),
             "error: folder.toml: is a folder, not a file", "name a file")
    assert files(tmp_path) == before and (tmp_path / "afile").read_text() == "mine"


def test_cache_that_is_a_file(tmp_path, config):
    from osnmf.run.folder import write_manifest

    out = tmp_path / "run"
    out.mkdir()
    write_manifest(out, {})  # an osnmf run folder, whose .cache someone replaced by a file
    (out / ".cache").write_text("notes")
    one_line(osnmf("run", "--config", config, "--out", out, cwd=tmp_path),
             f"error: {out / '.cache'}: a file (or a dangling symbolic link) is in the way of a folder")
    assert (out / ".cache").read_text() == "notes" and files(out) == [".cache", "manifest.json"]


def fail_under(monkeypatch, folder: Path, code: int, keep=lambda path: False) -> None:
    """``os.open``/``os.mkdir`` of a path under ``folder`` (unless ``keep(path)``) fail with ``code``."""
    real_open, real_mkdir = os.open, os.mkdir
    root = str(folder.resolve())

    def hit(path) -> bool:
        full = os.path.abspath(os.fsdecode(path))
        return (full == root or full.startswith(root + os.sep)) and not keep(Path(full))

    def fake_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and hit(path):
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if hit(path):
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    from osnmf.cli import main

    monkeypatch.setattr(sys, "argv", ["osnmf", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("env") / "run"
    Pipeline(RunConfig(out=str(out), **TINY)).run()
    return out


def test_read_only_out(tmp_path, config, monkeypatch, capsys):
    for out in (tmp_path / "ro", tmp_path / "ro" / "new"):
        (tmp_path / "ro").mkdir(exist_ok=True)
        with monkeypatch.context() as patch:
            fail_under(patch, tmp_path / "ro", errno.EROFS)
            code, err = cli(patch, capsys, "run", "--config", config, "--out", out)
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"error: {out}") and "Read-only file system; choose a folder on a writable disk" in err
        assert files(tmp_path / "ro") == []


def test_disk_full_during_the_outputs_leaves_no_lock_and_no_part(finished_run, monkeypatch, capsys):
    """A rerun (its stages from the cache) whose result files cannot be written: the old results stay."""
    before = {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file() and ".cache" not in p.parts
              and "sweep" not in p.parts}
    machinery = {".cache", "sweep", ".lock"}
    with monkeypatch.context() as patch:
        fail_under(patch, finished_run, errno.ENOSPC,
                   keep=lambda p: bool(machinery & set(p.relative_to(finished_run.resolve()).parts)))
        code, err = cli(patch, capsys, "run", "--config", _config(finished_run.parent), "--out", finished_run)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {finished_run}") and "disk full (No space left on device); free space" in err
    named = Path(err[len("error: "):].split(": ")[0]).relative_to(finished_run)
    assert named.parts[0] not in machinery | {"manifest.json"}, err  # a result file of the outputs stage
    assert not (finished_run / ".lock").exists()
    assert [p for p in finished_run.rglob("*.part")] == []
    assert {p: p.read_bytes() for p in before} == before  # nothing half-written over the old results


def _config(folder: Path) -> Path:
    path = folder / "tiny.toml"
    path.write_text(TOML + "\n")
    return path


def test_project_into_a_read_only_folder(finished_run, shared_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "proj"
    out.mkdir()
    with monkeypatch.context() as patch:
        fail_under(patch, out, errno.EROFS)
        code, err = cli(patch, capsys, "project", finished_run, "--data", shared_dir / "data" / "aba_real",
                        "--out", out, "--quiet")
    # the run is a synthetic demo: project's two warnings about that come first (shown even with --quiet)
    lines = err.splitlines()
    assert code == 2 and all(" warning: " in line for line in lines[:-1]), err
    assert lines[-1].startswith(f"error: {out}") and "Read-only file system; choose a folder on a writable disk" in err
    assert files(out) == []
