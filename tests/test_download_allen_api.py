"""download-aba against a local server that answers like the real Allen API.

The server's SectionDataSet records are the real ones: their fields are read from the
``data_set.xml`` of the real zips in ``../shared/data/aba_real`` (the Allen API serves the same
model as JSON with snake_case keys), wrapped in the RMA envelope (success, id, start_row,
num_rows, total_rows, msg). It applies the criteria it is sent (failed, plane, product,
treatment), caps pages at 2 rows, and answers a refused option with ``success: false``. It
serves the real grid zips, and zips of other shapes for two made-up ids.
"""

import io
import json
import re
import sys
import threading
import urllib.parse
import warnings
import xml.etree.ElementTree as ET
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from osnmf import cli
from osnmf.datasets.allen_query import query_url
from osnmf.datasets.download import _plane_table, download_aba, packaged_experiments
from osnmf.errors import OsnmfWarning
from osnmf.formats.allen_grid import read_plane_of_section
from osnmf.io.aba_folder import read_aba_folder

PAGE = 2
# the seed paper's download query (shifwang/allen_institute_collaboration,
# data/download_mouse_brain_ISH_data.py), its filter with the plane as a parameter
PAPER_FILTER = ("model::SectionDataSet,rma::criteria,[failed$eqFalse],plane_of_section[name$eq{plane}],"
                "products[name$eq'Mouse Brain'],treatments[name$eqISH],rma::include,genes")
ENTREZ = {"Nrp1": 18186, "Pdyn": 18610, "Gabra1": 14394, "Gabra2": 14395, "Gabrb3": 14402}  # NCBI Gene ids
ODD_SHAPES = {"500000001": (68, 40, 50), "500000002": (73, 41, 53)}


def _value(node):
    if node.get("nil") == "true":
        return None
    text = (node.text or "").strip()
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def real_record(zip_bytes: bytes, plane: str, gene: str) -> tuple[dict, dict]:
    """(the JSON record, its hidden relations) of a real data set, from its zip's data_set.xml."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        root = ET.fromstring(zf.read("data_set.xml"))
    record = {child.tag.replace("-", "_"): _value(child) for child in root if len(child) == 0 and child.tag != "age"}
    record.pop("plane_of_section", None)  # the empty <plane_of_section/> element, not a field
    record["plane_of_section_id"] = {"coronal": 1, "sagittal": 2}[plane]
    record["genes"] = [{"acronym": gene, "entrez_id": ENTREZ[gene], "organism_id": 2}]
    products = [p.findtext("name") for p in root.iter("product")]
    return record, {"plane": plane, "treatment": "ISH", "products": products}


def odd_zip(shape) -> bytes:
    """An Allen-style energy zip of another grid shape (header as the real energy.mhd, DimSize changed)."""
    header = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\nCenterOfRotation = 0 0 0\n"
              "AnatomicalOrientation = RAI\nElementSpacing = 200 200 200\n"
              f"DimSize = {' '.join(map(str, shape))}\nElementType = MET_FLOAT\nElementDataFile = energy.raw\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("energy.mhd", header)
        zf.writestr("energy.raw", np.full(int(np.prod(shape)), -1, "<f4").tobytes())
    return buf.getvalue()


class AllenApi(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, catalogue, files):
        super().__init__(("127.0.0.1", 0), Handler)
        self.catalogue, self.files = catalogue, files  # [(record, hidden)], id -> zip bytes
        self.criteria: list[str] = []
        self.grid_hits: dict[str, int] = {}
        self.refuse_order: str | None = None  # None, "envelope" (success: false) or "http"
        self.fail = False
        self.lock = threading.Lock()

    @property
    def port(self):
        return self.server_address[1]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def select(self, criteria: str) -> list[dict]:
        """The records the RMA filter in ``criteria`` selects, sorted by id if asked, else not."""
        plane = re.search(r"plane_of_section\[name\$eq'?(\w+)'?\]", criteria)
        product = re.search(r"products\[name\$eq'([^']+)'\]", criteria)
        chosen = []
        for record, hidden in self.catalogue:
            if re.search(r"\[failed\$eq'?false'?\]", criteria, re.I) and record["failed"]:
                continue
            if plane and hidden["plane"] != plane.group(1):
                continue
            if product and product.group(1) not in hidden["products"]:
                continue
            if "treatments[name$eqISH]" in criteria and hidden["treatment"] != "ISH":
                continue
            shown = dict(record)
            if "rma::include,genes" not in criteria:
                shown.pop("genes")
            chosen.append(shown)
        key = (lambda r: r["id"]) if "[order$eq'data_sets.id']" in criteria else (lambda r: -r["sphinx_id"])
        return sorted(chosen, key=key)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, code, body, kind):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, body, code=200):
        self._reply(code, json.dumps(body).encode(), "application/json")

    def do_GET(self):
        parsed = urllib.parse.urlparse(self.path)
        srv = self.server
        if parsed.path == "/api/v2/data/query.json":
            criteria = urllib.parse.parse_qs(parsed.query)["criteria"][0]
            with srv.lock:
                srv.criteria.append(criteria)
            if srv.fail:
                return self._reply(500, b"Internal Server Error", "text/plain")
            if srv.refuse_order and "[order$eq" in criteria:
                if srv.refuse_order == "http":
                    return self._reply(400, b"Bad Request", "text/plain")
                return self._json({"success": False, "id": -1, "start_row": 0, "num_rows": 0, "total_rows": 0,
                                   "msg": "Data Access error in query: unknown column data_sets.id"})
            start = int(re.search(r"\[start_row\$eq(\d+)\]", criteria).group(1))
            rows = srv.select(criteria)
            page = rows[start:start + PAGE]
            return self._json({"success": True, "id": 0, "start_row": start, "num_rows": len(page),
                               "total_rows": len(rows), "msg": page})
        prefix = "/grid_data/download/"
        exp_id = parsed.path[len(prefix):]
        if parsed.path.startswith(prefix) and parsed.query == "include=energy" and exp_id in srv.files:
            with srv.lock:
                srv.grid_hits[exp_id] = srv.grid_hits.get(exp_id, 0) + 1
            return self._reply(200, srv.files[exp_id], "application/zip")
        return self._reply(404, b"Not Found", "text/plain")


@pytest.fixture()
def real(shared_dir):
    folder = shared_dir / "data" / "aba_real"
    table = pd.read_csv(folder / "experiments.csv", dtype=str)
    return folder, table


@pytest.fixture()
def api(real):
    folder, table = real
    files, catalogue = {}, []
    for exp_id, gene, plane in zip(table["section_data_set_id"], table["gene_symbol"], table["plane"], strict=True):
        files[exp_id] = (folder / "energy" / f"{exp_id}.zip").read_bytes()
        catalogue.append(real_record(files[exp_id], plane, gene))
    # the Gabra2 sagittal record without entrez_id, the Gabrb3 one with null: entrez is optional
    by_id = {str(r["id"]): r for r, _ in catalogue}
    del by_id["70593139"]["genes"][0]["entrez_id"]
    by_id["69256872"]["genes"][0]["entrez_id"] = None
    # a NISSL set (no gene) and a failed ISH set of the same plane: the query must leave them out
    nissl, hidden = real_record(files["69856453"], "sagittal", "Gabra1")
    catalogue.append(({**nissl, "id": 69856454, "sphinx_id": 1, "genes": []}, {**hidden, "treatment": "NISSL"}))
    failed, hidden = real_record(files["70593139"], "sagittal", "Gabra2")
    catalogue.append(({**failed, "id": 70593140, "sphinx_id": 2, "failed": True}, hidden))
    files.update({i: odd_zip(shape) for i, shape in ODD_SHAPES.items()})
    srv = AllenApi(catalogue, files)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["osnmf", "download-aba", *map(str, args)])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def sagittal_ids(table):
    return sorted(table.loc[table["plane"] == "sagittal", "section_data_set_id"], key=int)


def test_plane_comes_from_the_real_zips_reference_space(real, tmp_path):
    folder, table = real
    for exp_id, plane in zip(table["section_data_set_id"], table["plane"], strict=True):
        with zipfile.ZipFile(folder / "energy" / f"{exp_id}.zip") as zf:
            xml = zf.read("data_set.xml").decode()
        assert "<plane_of_section/>" in xml  # the real zips leave the plane element empty
        space = {"coronal": "9", "sagittal": "10"}[plane]
        assert f"<reference-space-id>{space}</reference-space-id>" in xml
        assert read_plane_of_section(folder / "energy" / f"{exp_id}.zip") == plane
    # a folder whose experiments.csv has no plane column gets the planes from the zips
    copy = tmp_path / "aba"
    (copy / "energy").mkdir(parents=True)
    for exp_id in table["section_data_set_id"]:
        (copy / "energy" / f"{exp_id}.zip").write_bytes((folder / "energy" / f"{exp_id}.zip").read_bytes())
    table[["section_data_set_id", "gene_symbol"]].to_csv(copy / "experiments.csv", index=False)
    assert list(read_aba_folder(copy).planes) == list(table["plane"])


def test_query_is_the_papers(api):
    for plane in ("coronal", "sagittal"):
        criteria = urllib.parse.unquote(urllib.parse.urlparse(query_url(api.url, plane)).query)
        assert criteria.startswith("criteria=" + PAPER_FILTER.format(plane=plane) + ",rma::options[")


def test_cli_sagittal_fetches_exactly_the_real_sagittal_ids(api, real, tmp_path, monkeypatch, capsys):
    _, table = real
    out = tmp_path / "aba"
    code, stdout, err = run_cli(monkeypatch, capsys, out, "--plane", "sagittal", "--base-url", api.url,
                                "--no-progress", "--retries", "0")
    assert code == 0, err
    expected = sagittal_ids(table)
    assert sorted(api.grid_hits) == expected and set(api.grid_hits.values()) == {1}
    assert "3 downloaded, 0 already present, 0 failed" in stdout
    assert all(PAPER_FILTER.format(plane="sagittal") in c for c in api.criteria)
    listed = pd.read_csv(out / "sagittal_experiments.csv", dtype=str, keep_default_na=False)
    assert listed["section_data_set_id"].tolist() == expected  # no NISSL, no failed set
    assert listed["entrez_id"].tolist() == ["", str(ENTREZ["Gabra1"]), ""]  # 69256872 null, 69856453, 70593139 absent
    got = pd.read_csv(out / "experiments.csv", dtype=str).set_index("section_data_set_id")
    want = table.set_index("section_data_set_id").loc[expected]
    assert got.loc[expected, "gene_symbol"].tolist() == want["gene_symbol"].tolist()
    assert (got["plane"] == "sagittal").all()
    assert json.loads((out / "sagittal_experiments.json").read_text())["source"] == "query"


def test_other_grid_shapes_fail_once_with_one_line_and_the_rest_download(api, tmp_path, monkeypatch, capsys):
    csv = tmp_path / "list.csv"
    ids = ["500000001", "74272479", "500000002"]
    pd.DataFrame({"section_data_set_id": ids, "gene_symbol": ["Odd1", "Nrp1", "Odd2"]}).to_csv(csv, index=False)
    out = tmp_path / "aba"
    code, stdout, err = run_cli(monkeypatch, capsys, out, "--experiments", csv, "--base-url", api.url,
                                "--no-progress", "--retries", "3", "--backoff", "0")
    assert code == 1
    assert api.grid_hits == {"500000001": 1, "74272479": 1, "500000002": 1}  # not retried
    for exp_id, shape in ODD_SHAPES.items():
        lines = [line for line in stdout.splitlines() if exp_id in line]
        assert len(lines) == 1 and " × ".join(map(str, shape)) in lines[0]
    assert "rerun" not in stdout  # a rerun cannot change a grid's shape
    assert sorted(p.name for p in (out / "energy").iterdir()) == ["74272479.zip"]
    assert pd.read_csv(out / "experiments.csv", dtype=str)["section_data_set_id"].tolist() == ["74272479"]


def test_https_that_cannot_connect_falls_back_to_http(api, real, tmp_path):
    _, table = real
    out = tmp_path / "aba"
    https = f"https://127.0.0.1:{api.port}"  # a plain-HTTP server: the TLS handshake fails
    with pytest.warns(OsnmfWarning, match="https to the Allen API failed"):
        report = download_aba(out, plane="sagittal", base_url=https, progress=False, retries=0)
    assert report.ok and sorted(report.downloaded, key=int) == sagittal_ids(table)
    assert json.loads((out / "sagittal_experiments.json").read_text())["query"].startswith(api.url + "/api/v2/")
    # grids alone (no list query first) fall back the same way
    with pytest.warns(OsnmfWarning, match="https to the Allen API failed"):
        again = download_aba(tmp_path / "grids", [74272479, 69856453], base_url=https, progress=False, retries=0)
    assert again.downloaded == ["74272479", "69856453"]
    listed = pd.read_csv(tmp_path / "grids" / "experiments.csv", dtype=str)
    assert listed["plane"].tolist() == ["coronal", "sagittal"]  # ids looked up in both packaged lists


@pytest.mark.parametrize("refusal", ["envelope", "http"])
def test_refused_sort_is_asked_again_without_it(api, real, tmp_path, refusal):
    _, table = real
    api.refuse_order = refusal
    with pytest.warns(OsnmfWarning, match="listed without it") as caught:
        got = _plane_table(tmp_path, "sagittal", api.url, 5.0, 0, 0.0, False)
    assert "experiment list query failed" not in str(caught[0].message)  # the reason alone, one short line
    assert got["section_data_set_id"].tolist() == sagittal_ids(table)
    unsorted = [c for c in api.criteria if "[order$eq" not in c]
    assert len(unsorted) == 2  # 3 records, pages of 2, served in a different order than by id


def test_failed_listing_uses_the_packaged_sagittal_list(api, real, tmp_path):
    _, table = real
    api.fail = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _plane_table(tmp_path, "sagittal", api.url, 5.0, 0, 0.0, False)
    assert [str(w.message) for w in caught if "packaged sagittal list" in str(w.message)]
    assert len(got) == 21716 and got["section_data_set_id"].is_unique and (got["plane"] == "sagittal").all()
    sag = table[table["plane"] == "sagittal"].set_index("section_data_set_id")["gene_symbol"]
    assert got.set_index("section_data_set_id").loc[sag.index, "gene_symbol"].tolist() == sag.tolist()
    assert not set(got["section_data_set_id"]) & set(packaged_experiments()["section_data_set_id"])
    meta = json.loads((tmp_path / "sagittal_experiments.json").read_text())
    assert meta["source"] == "packaged" and meta["n_experiments"] == 21716 and "500" in meta["query_error"]
    # the cached fallback is reused: a rerun asks nothing
    asked = len(api.criteria)
    assert len(_plane_table(tmp_path, "sagittal", api.url, 5.0, 0, 0.0, False)) == 21716
    assert len(api.criteria) == asked
