"""Hostile inputs cannot exhaust memory (issue 35, items 6 and 13): a zip member's declared size and
a MetaImage header are checked against the grid before anything is decompressed, members are read
with a cap, an .npz header's shape is checked before numpy allocates it. Each case: one line, exit
2 (or a failed download), nothing written, and the peak memory of the process measured (VmHWM of
a child process) under 0.5 GiB."""

import io
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from osnmf.errors import InputError
from osnmf.formats.allen_grid import read_allen_grid_zip
from osnmf.formats.metaimage import encode_mhd, parse_mhd
from osnmf.io.npz import read_npz

GRID = (67, 41, 58)
GIB = 1 << 30
PEAK_LIMIT = GIB // 2
# runs the CLI in this child and reports its peak resident memory (Linux: kB) on the last line of stdout
# (VmHWM of /proc/self/status: ru_maxrss would include the forking parent's memory, kept across exec)
PEAK_KB = """
def peak_kb():
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""
DRIVER = PEAK_KB + """
import sys
from osnmf.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
print("peak_kb", peak_kb())
sys.exit(code)
"""


def cli_peak(*args, cwd=None) -> tuple[int, str, str, int]:
    """(exit code, stdout without the last line, stderr, peak bytes) of ``osnmf ARGS`` in a child."""
    proc = subprocess.run([sys.executable, "-c", DRIVER, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    *lines, last = proc.stdout.strip().splitlines() or ["peak_kb 0"]
    assert last.startswith("peak_kb "), proc.stdout + proc.stderr
    return proc.returncode, "\n".join(lines), proc.stderr, int(last.split()[1]) * 1024


def write_zero_member(zf: zipfile.ZipFile, name: str, n_bytes: int) -> None:
    """A member of ``n_bytes`` zeros, streamed (deflate: about 1 kB per MB)."""
    block = bytes(1 << 20)
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w") as handle:
        for start in range(0, n_bytes, len(block)):
            handle.write(block[: min(len(block), n_bytes - start)])


def lie_about_size(path: Path, name: str, declared: int) -> None:
    """Rewrite the uncompressed size of member ``name`` in its local header and the central directory."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            if data[start + name_at:start + name_at + len(encoded)] == encoded:
                struct.pack_into("<I", data, start + size_at, declared)
            start += 4
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """An Allen-like zip whose energy.raw decompresses to 1 GiB (about 1 MB on disk), lying variants."""
    folder = tmp_path_factory.mktemp("bombs")
    honest = folder / "honest.zip"  # 67 × 41 × 58 header, a 1 GiB raw member declared as such
    with zipfile.ZipFile(honest, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("energy.mhd", encode_mhd(GRID, np.dtype("<f4"), "energy.raw"))
        write_zero_member(zf, "energy.raw", GIB)
    liar = folder / "liar.zip"  # the same, but the zip declares the 637,304 bytes the header needs
    liar.write_bytes(honest.read_bytes())
    lie_about_size(liar, "energy.raw", int(np.prod(GRID)) * 4)
    huge_header = folder / "huge_header.zip"  # a header declaring a 1 GiB grid (refused before its raw member)
    with zipfile.ZipFile(huge_header, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("energy.mhd", encode_mhd((1024, 1024, 256), np.dtype("<f4"), "energy.raw"))
        write_zero_member(zf, "energy.raw", GIB // 16)
    xml = folder / "xml.zip"  # a valid grid and a 256 MiB data_set.xml
    with zipfile.ZipFile(xml, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("energy.mhd", encode_mhd(GRID, np.dtype("<f4"), "energy.raw"))
        zf.writestr("energy.raw", np.zeros(GRID, "<f4").tobytes())
        write_zero_member(zf, "data_set.xml", GIB // 4)
    return {"honest": honest, "liar": liar, "huge_header": huge_header, "xml": xml}


@pytest.mark.parametrize("case,words", [("honest", "raw data has 1073741824 bytes but the header's DimSize 67 41 58"),
                                        ("liar", "corrupt"),
                                        ("huge_header", "voxels, more than")])
def test_zip_bombs_are_refused_in_one_line_with_little_memory(bombs, tmp_path, case, words):
    path = bombs[case]
    assert path.stat().st_size < 2 << 20  # about 1 MB on disk, 1 GiB inside
    code, out, err, peak = cli_peak("info", path, cwd=tmp_path)
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}") and words in err, err
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.0f} MiB"
    assert list(tmp_path.iterdir()) == []


def test_zip_bomb_in_an_aba_folder_and_a_huge_data_set_xml(bombs, tmp_path):
    aba = tmp_path / "aba"
    (aba / "energy").mkdir(parents=True)
    (aba / "experiments.csv").write_text("section_data_set_id,gene_symbol\n1,A\n")
    (aba / "energy" / "1.zip").write_bytes(bombs["honest"].read_bytes())
    code, _, err, peak = cli_peak("info", aba)
    named = f"{aba / 'energy' / '1.zip'}:energy.raw: raw data has 1073741824 bytes"
    assert code == 2 and err.count("\n") == 1 and named in err, err
    assert peak < PEAK_LIMIT
    (aba / "energy" / "1.zip").write_bytes(bombs["xml"].read_bytes())  # the plane is read from data_set.xml
    code, _, err, peak = cli_peak("info", aba)
    assert code == 2 and err.count("\n") == 1 and "data_set.xml declares" in err, err
    assert peak < PEAK_LIMIT


def test_a_genuine_grid_still_reads(shared_dir):
    """The bounds refuse nothing real: every reference zip reads, and equals its raw bytes decoded."""
    zips = sorted((shared_dir / "data" / "aba_real" / "energy").glob("*.zip"))
    assert len(zips) == 8
    for path in zips:
        with zipfile.ZipFile(path) as zf:
            raw = np.frombuffer(zf.read("energy.raw"), "<f4").reshape(GRID, order="F")
        got = read_allen_grid_zip(path, expected_shape=GRID)["energy"]
        np.testing.assert_array_equal(np.nan_to_num(got, nan=-1.0), raw)


def npz_with_header(path: Path, shape, payload: bytes = b"\0" * 64, declared: int | None = None) -> Path:
    """An .npz whose 'data' member is an .npy header declaring ``shape`` (float32) and ``payload``."""
    member = io.BytesIO()
    npy_format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})
    member.write(payload)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.npy", member.getvalue())
        zf.writestr("genes.npy", _npy(np.array(["A"])))
    if declared is not None:
        lie_about_size(path, "data.npy", declared)
    return path


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.mark.parametrize("declared", [None, 4_000_000_000])
def test_npz_declaring_a_huge_shape_is_refused_before_allocation(tmp_path, declared):
    """1 kB; its header says 10^6 grids (59 GiB of float32); the zip tells the truth or claims 4 GB."""
    path = npz_with_header(tmp_path / "huge.npz", (10**6, *GRID), declared=declared)
    assert path.stat().st_size < 2000
    code, out, err, peak = cli_peak("info", path, cwd=tmp_path)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"error: {path}:data.npy: its header declares shape (1000000, 67, 41, 58)"), err
    assert peak < PEAK_LIMIT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.npz"]


def test_npz_shape_and_kind_are_checked_from_the_header(tmp_path, atlas):
    n = int(np.prod(GRID)) * 4
    with pytest.raises(InputError, match=r"'data' grid is \(41, 58, 67\)"):  # the grid, before reading
        read_npz(npz_with_header(tmp_path / "a.npz", (2, 41, 58, 67), bytes(2 * n)), atlas)
    with pytest.raises(InputError, match="'genes' has 1 entries but 'data' has 2"):
        read_npz(npz_with_header(tmp_path / "b.npz", (2, *GRID), bytes(2 * n)), atlas)
    with pytest.raises(InputError, match="header declares shape"):  # short payload
        read_npz(npz_with_header(tmp_path / "c.npz", (1, *GRID), bytes(n - 4)), atlas)
    obj = tmp_path / "d.npz"
    with zipfile.ZipFile(obj, "w") as zf:
        zf.writestr("data.npy", _npy(np.array([None, 1], dtype=object)))
    with pytest.raises(InputError, match="object arrays, which need pickle"):
        read_npz(obj, atlas)
    good = npz_with_header(tmp_path / "e.npz", (1, *GRID), np.ones(GRID, "<f4").tobytes())
    assert read_npz(good, atlas).volumes.shape == (1, *GRID)


@pytest.mark.parametrize("line,words", [("NDims = three", "NDims 'three' is not an integer"),
                                        ("NDims = 2", "expected a 3-D image"),
                                        ("DimSize = 4294967296 4294967296 4294967296", "voxels, more than"),
                                        ("DimSize = 67 41 -58", "expected a 3-D image")])
def test_malformed_headers_are_one_line(tmp_path, line, words):
    """NDims that is not a number, and a DimSize whose product overflows int64 (2^96: it wrapped to 0
    with np.prod, passing the size check), are refused with one line."""
    key = line.split(" = ")[0]
    text = "\n".join(line if row.startswith(key + " ") else row
                     for row in encode_mhd(GRID, np.dtype("<f4"), "energy.raw").splitlines())
    with pytest.raises(InputError, match=words):
        parse_mhd(text, "x.mhd")
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("energy.mhd", text)
        zf.writestr("energy.raw", np.zeros(GRID, "<f4").tobytes())
    proc = subprocess.run([sys.executable, "-m", "osnmf.cli", "info", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr


def test_a_run_whose_patterns_npz_declares_a_huge_shape_is_refused_by_project(tmp_path):
    """``osnmf project RUN``: RUN/patterns.npz's headers are checked before np.load allocates (a
    1 kB file declaring 10^6 grids of patterns): one line naming the member, exit 2, bounded memory,
    nothing written."""
    run = tmp_path / "run"
    run.mkdir()
    path = npz_with_header(run / "patterns.npz", (10**6, *GRID))
    (run / "summary.json").write_text('{"parameters": {}}')
    code, out, err, peak = cli_peak("project", run, "--data", run, "--out", tmp_path / "proj", cwd=tmp_path)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {path}:data.npy: its header declares shape (1000000, 67, 41, 58)"), err
    assert peak < PEAK_LIMIT
    assert not (tmp_path / "proj").exists()
