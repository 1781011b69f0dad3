"""download_aba against a local HTTP server (127.0.0.1, ephemeral port) that serves the real Allen
zips under the API's URL scheme and injects faults."""

import io
import subprocess
import sys
import threading
import urllib.parse
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osnmf.datasets.download import download_aba, grid_url, packaged_experiments
from osnmf.errors import ConfigError, DownloadError, InputError
from osnmf.formats.allen_grid import read_allen_grid_zip
from osnmf.io.aba_folder import read_aba_folder

REAL = {"74272479": "Nrp1", "71717084": "Pdyn"}
REPO = Path(__file__).resolve().parents[1]


class FaultServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, files):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files  # id -> bytes
        self.once: dict[str, list[str]] = {}  # id -> faults served first, in order, then "ok"
        self.always: dict[str, str] = {}  # id -> fault served every time
        self.hits = Counter()
        self.lock = threading.Lock()
        self.release = threading.Event()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fault_for(self, exp_id):
        with self.lock:
            self.hits[exp_id] += 1
            if exp_id in self.always:
                return self.always[exp_id]
            queue = self.once.get(exp_id)
            return queue.pop(0) if queue else "ok"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, code, body=b"", length=None):
        self.send_response(code)
        self.send_header("Content-Type", "application/zip" if code == 200 else "text/plain")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        return body

    def do_GET(self):
        parsed = urllib.parse.urlparse(self.path)
        prefix = "/grid_data/download/"
        if not parsed.path.startswith(prefix) or urllib.parse.parse_qs(parsed.query) != {"include": ["energy"]}:
            self.wfile.write(self._send(400, b"bad request"))
            return
        exp_id = parsed.path[len(prefix):]
        body = self.server.files.get(exp_id)
        fault = self.server.fault_for(exp_id)
        if body is None or fault == "404":
            self.wfile.write(self._send(404, b"not found"))
        elif fault == "500":
            self.wfile.write(self._send(500, b"oops"))
        elif fault == "short":  # Content-Length larger than what is sent, then close
            self._send(200, length=len(body))
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif fault == "drop":  # close without any response
            self.close_connection = True
        elif fault == "stall":  # headers and a little data, then silence
            self._send(200, length=len(body))
            self.wfile.write(body[:100])
            self.wfile.flush()
            self.server.release.wait(5)
            self.close_connection = True
        elif fault == "trickle":  # one small chunk every 50 ms: never silent long enough to time out
            self._send(200, length=len(body))
            for start in range(0, min(len(body), 4000), 100):
                if self.server.release.wait(0.05):
                    break
                self.wfile.write(body[start:start + 100])
                self.wfile.flush()
            self.close_connection = True
        elif fault == "corrupt":
            junk = b"PK\x03\x04" + bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))
            self.wfile.write(self._send(200, junk))
        elif fault == "traversal":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf, zipfile.ZipFile(io.BytesIO(body)) as src:
                for name in src.namelist():
                    zf.writestr(name, src.read(name))
                zf.writestr("../evil.txt", b"x")
            self.wfile.write(self._send(200, buf.getvalue()))
        else:
            self.wfile.write(self._send(200, body))


@pytest.fixture()
def server(shared_dir):
    real = {i: (shared_dir / "data" / "aba" / "energy" / f"{i}.zip").read_bytes() for i in REAL}
    files = dict(real)
    for n in range(1, 8):  # copies of the real zips under other ids
        files[f"90000{n}"] = real["74272479" if n % 2 else "71717084"]
    srv = FaultServer(files)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def table_for(ids):
    genes = {**REAL}
    return pd.DataFrame({"section_data_set_id": ids, "gene_symbol": [genes.get(i, f"Copy{i}") for i in ids]})


FAST = {"retries": 2, "backoff": 0.001, "max_backoff": 0.002, "timeout": 0.5, "progress": False}


def final_files(out):
    return sorted(p.name for p in (out / "energy").iterdir())


def test_faults_are_reported_exactly_and_a_rerun_finishes(server, tmp_path):
    ids = ["74272479", "71717084", "900001", "900002", "900003", "900004", "900005", "900006", "900007"]
    server.once = {"71717084": ["500"], "900003": ["drop"], "900004": ["stall"]}
    server.always = {"900001": "404", "900002": "short", "900005": "corrupt", "900006": "traversal",
                     "900007": "stall"}
    out = tmp_path / "aba"
    report = download_aba(out, table_for(ids), base_url=server.url, jobs=3, **FAST)

    assert report.downloaded == ["74272479", "71717084", "900003", "900004"]
    assert report.present == []
    assert list(report.failed) == ["900001", "900002", "900005", "900006", "900007"]
    assert report.failed["900001"].startswith("HTTP 404")
    assert "cut short" in report.failed["900002"] and "3 attempts" in report.failed["900002"]
    assert "invalid grid zip" in report.failed["900005"]
    assert "unsafe member" in report.failed["900006"]
    assert "timed out" in report.failed["900007"]
    assert server.hits["900001"] == 1  # 404 is not retried
    assert server.hits["71717084"] == 2 and server.hits["900002"] == 3
    assert not report.ok and "5 failed" in report.summary()

    # no corrupt or partial file under a final name, no temp files left
    assert final_files(out) == sorted(f"{i}.zip" for i in report.downloaded)
    for i in report.downloaded:
        assert (out / "energy" / f"{i}.zip").read_bytes() == server.files[i]
    listed = pd.read_csv(out / "experiments.csv", dtype=str)
    assert listed["section_data_set_id"].tolist() == report.downloaded
    assert len(read_aba_folder(out).genes) == 4  # the partial folder is loadable

    # rerun with the faults gone: valid files are verified and skipped, the rest fetched
    server.always = {}
    before = dict(server.hits)
    again = download_aba(out, table_for(ids), base_url=server.url, jobs=3, **FAST)
    assert again.present == ["74272479", "71717084", "900003", "900004"]
    assert again.downloaded == ["900001", "900002", "900005", "900006", "900007"]
    assert again.ok and again.failed == {}
    for i in again.present:
        assert server.hits[i] == before[i]
    assert final_files(out) == sorted(f"{i}.zip" for i in ids)

    expr = read_aba_folder(out)
    assert list(expr.experiment_ids) == ids
    assert list(expr.genes[:2]) == ["Nrp1", "Pdyn"]
    for n, i in enumerate(ids):
        expected = read_allen_grid_zip(io.BytesIO(server.files[i]).getvalue())["energy"]
        np.testing.assert_array_equal(expr.volumes[n], expected)


def test_corrupt_leftovers_are_replaced_and_temp_files_removed(server, tmp_path):
    out = tmp_path / "aba"
    (out / "energy").mkdir(parents=True)
    good = server.files["74272479"]
    (out / "energy" / "74272479.zip").write_bytes(good[: len(good) // 3])  # truncated final file
    (out / "energy" / ".71717084.zip.abc123.part").write_bytes(b"partial")  # an interrupted run's temp
    report = download_aba(out, table_for(list(REAL)), base_url=server.url, jobs=2, **FAST)
    assert report.downloaded == list(REAL) and report.ok
    assert final_files(out) == ["71717084.zip", "74272479.zip"]
    assert (out / "energy" / "74272479.zip").read_bytes() == good


def test_backoff_is_exponential_and_capped(server, tmp_path):
    server.always = {"900001": "500"}
    waits = []
    report = download_aba(tmp_path / "o", table_for(["900001"]), base_url=server.url, jobs=1, retries=3,
                          backoff=0.01, max_backoff=0.025, timeout=1, progress=False, sleep=waits.append)
    assert waits == [0.01, 0.02, 0.025]
    assert report.failed["900001"] == "HTTP 500 Internal Server Error (after 4 attempts)"
    with pytest.raises(DownloadError, match="1 of 1"):
        download_aba(tmp_path / "o", table_for(["900001"]), base_url=server.url, retries=0, progress=False,
                     raise_on_failure=True)


def test_earlier_entries_are_kept_in_experiments_csv(server, tmp_path):
    out = tmp_path / "aba"
    download_aba(out, table_for(["74272479"]), base_url=server.url, **FAST)
    download_aba(out, table_for(["71717084"]), base_url=server.url, **FAST)
    listed = pd.read_csv(out / "experiments.csv", dtype=str)
    assert listed["section_data_set_id"].tolist() == ["74272479", "71717084"]
    assert len(read_aba_folder(out).genes) == 2


def test_id_list_uses_packaged_symbols_and_input_is_checked(server, tmp_path):
    table = packaged_experiments()
    assert len(table) == 4345 and table["section_data_set_id"].is_unique
    report = download_aba(tmp_path / "o", [74272479], base_url=server.url, **FAST)
    assert report.downloaded == ["74272479"]
    assert pd.read_csv(tmp_path / "o" / "experiments.csv")["gene_symbol"].tolist() == ["Nrp1"]
    assert grid_url("https://api.brain-map.org/", "5") == "https://api.brain-map.org/grid_data/download/5?include=energy"
    with pytest.raises(InputError, match="not in the packaged"):
        download_aba(tmp_path / "o", [123456789012], base_url=server.url, progress=False)
    with pytest.raises(ConfigError, match="base URL"):
        download_aba(tmp_path / "o", [74272479], base_url="ftp://x", progress=False)
    with pytest.raises(ConfigError, match="jobs"):
        download_aba(tmp_path / "o", [74272479], base_url=server.url, jobs=0, progress=False)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,symbol\n1,a\n")
    with pytest.raises(InputError, match="missing column"):
        download_aba(tmp_path / "o", bad, base_url=server.url, progress=False)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "osnmf.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_cli_exit_codes(server, tmp_path):
    csv = tmp_path / "list.csv"
    table_for(["74272479", "900001"]).to_csv(csv, index=False)
    opts = ["--base-url", server.url, "--jobs", "2", "--retries", "1", "--backoff", "0", "--timeout", "2"]
    server.always = {"900001": "404"}
    res = run_cli("download-aba", tmp_path / "o", "--experiments", csv, *opts)
    assert res.returncode == 1, res.stderr
    assert "900001" in res.stdout + res.stderr and "404" in res.stdout + res.stderr
    server.always = {}
    res = run_cli("download-aba", tmp_path / "o", "--experiments", csv, *opts)
    assert res.returncode == 0, res.stderr
    assert "1 downloaded, 1 already present, 0 failed" in res.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text('section_data_set_id,gene_symbol\n"1,a\n')
    res = run_cli("download-aba", tmp_path / "o2", "--experiments", bad, *opts)
    assert res.returncode == 2 and "error" in res.stderr.lower()


def test_trickling_server_is_cut_off_by_max_seconds(server, tmp_path):
    server.always = {"900001": "trickle"}
    report = download_aba(tmp_path / "o", table_for(["900001", "74272479"]), base_url=server.url, jobs=2,
                          retries=1, backoff=0, timeout=0.5, max_seconds=0.4, progress=False)
    assert report.downloaded == ["74272479"]
    assert "too slow" in report.failed["900001"] and "2 attempts" in report.failed["900001"]
    assert final_files(tmp_path / "o") == ["74272479.zip"]
