"""download-aba --plane: the sagittal list from the Allen RMA query (a local server answering it
page by page and serving the real grids), cached with its date."""

import json
import sys
import threading
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from osnmf import cli
from osnmf.datasets.allen_query import query_url
from osnmf.datasets.download import _plane_table, download_aba, packaged_experiments
from osnmf.errors import DownloadError
from osnmf.io.aba_folder import read_aba_folder
from osnmf.preprocess.hemispheres import find_midline, hemisphere_coverage

PAGE = 2  # the server caps pages at 2 rows, whatever num_rows asks: the client must page


class AllenServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, records, files):
        super().__init__(("127.0.0.1", 0), Handler)
        self.records, self.files = records, files
        self.queries: list[dict] = []
        self.fail = False

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, code, body, kind):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parsed = urllib.parse.urlparse(self.path)
        srv = self.server
        if parsed.path == "/api/v2/data/query.json":
            criteria = urllib.parse.parse_qs(parsed.query)["criteria"][0]
            documented = ("model::SectionDataSet", "rma::criteria", "[failed$eqFalse]",
                          "products[name$eq'Mouse Brain']", "plane_of_section[name$eqsagittal]",
                          "treatments[name$eqISH]", "rma::include,genes")
            if not all(part in criteria for part in documented):
                return self._reply(400, b"bad query", "text/plain")
            start = int(criteria.split("[start_row$eq")[1].split("]")[0])
            srv.queries.append({"start_row": start})
            rows = srv.records[start:start + PAGE]
            body = {"success": not srv.fail, "id": 0, "start_row": start, "num_rows": len(rows),
                    "total_rows": len(srv.records), "msg": rows if not srv.fail else "error"}
            return self._reply(200, json.dumps(body).encode(), "application/json")
        prefix = "/grid_data/download/"
        exp_id = parsed.path[len(prefix):]
        if parsed.path.startswith(prefix) and exp_id in srv.files:
            return self._reply(200, srv.files[exp_id], "application/zip")
        return self._reply(404, b"not found", "text/plain")


@pytest.fixture()
def allen(shared_dir):
    folder = shared_dir / "data" / "aba_real"
    table = pd.read_csv(folder / "experiments.csv", dtype=str)
    sag = table[table["plane"] == "sagittal"]
    records = [{"id": int(i), "failed": False, "genes": [{"acronym": g, "entrez_id": 14394 + n}]}
               for n, (i, g) in enumerate(zip(sag["section_data_set_id"], sag["gene_symbol"], strict=True))]
    records.insert(1, {"id": 1, "failed": False, "genes": []})  # an experiment without a gene: left out
    files = {i: (folder / "energy" / f"{i}.zip").read_bytes() for i in table["section_data_set_id"]}
    srv = AllenServer(records, files)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv, sag
    srv.shutdown()
    srv.server_close()


def test_sagittal_list_is_queried_paged_cached_and_downloaded(allen, tmp_path):
    srv, sag = allen
    out = tmp_path / "aba"
    report = download_aba(out, plane="sagittal", base_url=srv.url, progress=False, retries=0)
    assert report.ok and sorted(report.downloaded) == sorted(sag["section_data_set_id"])
    assert [q["start_row"] for q in srv.queries] == [0, 2]  # 4 records, pages of 2
    listed = pd.read_csv(out / "experiments.csv", dtype=str)
    assert listed["plane"].eq("sagittal").all()
    assert dict(zip(listed["section_data_set_id"], listed["gene_symbol"], strict=True)) == dict(
        zip(sag["section_data_set_id"], sag["gene_symbol"], strict=True))
    meta = json.loads((out / "sagittal_experiments.json").read_text())
    assert meta["n_experiments"] == 3 and meta["plane"] == "sagittal"
    assert meta["retrieved_utc"][:10] == datetime.now(UTC).strftime("%Y-%m-%d")
    assert meta["query"] == query_url(srv.url, "sagittal")
    expr = read_aba_folder(out)
    assert (expr.planes == "sagittal").all()
    cov = hemisphere_coverage(expr.volumes, expr.atlas.brain_mask, find_midline(expr.atlas.annotation))
    assert cov["hemisphere"].eq("left").all()
    # a rerun uses the cached list (no query), --refresh-list asks again
    download_aba(out, plane="sagittal", base_url=srv.url, progress=False, retries=0)
    assert len(srv.queries) == 2
    again = download_aba(out, plane="sagittal", base_url=srv.url, progress=False, retries=0, refresh_list=True)
    assert len(srv.queries) == 4 and sorted(again.present) == sorted(sag["section_data_set_id"])


def test_both_planes_list_is_the_packaged_coronal_plus_the_sagittal(allen, tmp_path):
    srv, sag = allen
    table = _plane_table(tmp_path, "both", srv.url, 10.0, 0, 0.0, False)
    coronal = packaged_experiments()
    assert len(table) == len(coronal) + 3
    np.testing.assert_array_equal(table["section_data_set_id"].iloc[-3:], sorted(sag["section_data_set_id"], key=int))
    assert (table["plane"].iloc[: len(coronal)] == "coronal").all() and (table["plane"].iloc[-3:] == "sagittal").all()


def test_failed_refresh_query_is_one_line_and_writes_nothing(allen, tmp_path, monkeypatch, capsys):
    # --refresh-list asks the API explicitly: its failure is an error, not the packaged list
    srv, _ = allen
    srv.fail = True
    out = tmp_path / "aba"
    with pytest.raises(DownloadError):
        download_aba(out, plane="sagittal", base_url=srv.url, progress=False, retries=0, refresh_list=True)
    assert not out.exists()
    monkeypatch.setattr(sys, "argv", ["osnmf", "download-aba", str(out), "--plane", "sagittal", "--refresh-list",
                                      "--base-url", srv.url, "--retries", "0", "--no-progress"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "experiment list" in err[0]
    assert not out.exists()


def test_cli_plane_sagittal(allen, tmp_path, monkeypatch, capsys):
    srv, _ = allen
    out = tmp_path / "aba"
    monkeypatch.setattr(sys, "argv", ["osnmf", "download-aba", str(out), "--plane", "sagittal",
                                      "--base-url", srv.url, "--no-progress"])
    try:
        cli.main()
    except SystemExit as exc:  # success returns, or exits 0
        assert exc.code in (0, None)
    assert "3 downloaded" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["osnmf", "download-aba", str(out), "--plane", "axial", "--base-url", srv.url])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2 and "axial" in capsys.readouterr().err
