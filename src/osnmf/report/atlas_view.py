"""The interactive atlas view of ``report.html``: patterns, genes and regions on a ``<canvas>``.

Everything the view draws is embedded in the page (no network): the patterns quantised to uint8
per pattern, the annotation as uint16 region indices, the support mask bit-packed, each compressed
with zlib and base64-encoded (the page inflates them with the browser's ``DecompressionStream``).
Every gene's coefficients are embedded, so its reconstruction is computed in the page from the
patterns; measured images (5-bit) only for up to :data:`MAX_MEASURED_GENES` genes: the marker genes
of the patterns first, then the genes of the coexpression networks. The JavaScript and CSS are
package files beside this module (``atlas_view.js``, ``atlas_view.css``).
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from importlib import resources

import numpy as np
import pandas as pd

from osnmf.atlas import position_label
from osnmf.report.html import Section

MAX_MEASURED_GENES = 32  # measured images embedded (each ~20-30 kB in the page)
GENE_LEVELS = 31  # measured images: 5-bit levels (0 … 31) of the gene's 99.5th percentile
MARKERS_PER_PATTERN = 8  # marker genes listed per pattern
TITLE = "Interactive atlas view"


def atlas_view_section(state, names: list[str]) -> Section:
    """The report section holding the view: a few sentences of help and the widget itself."""
    data = view_data(state, names)
    genes = data["genes"]
    n_measured, n_genes = len(genes["measured"]), len(genes["symbol"])
    return Section(TITLE, paragraphs=[
        "Pick a pattern and a plane (coronal, sagittal, horizontal) and move the slider through the sections; "
        "white lines outline the annotation's regions and the region under the mouse is named below the image. "
        "Type a gene to see its coefficients on every pattern, its measured and reconstructed section (the same "
        "plane and slice) and its coexpression network; type a region (Allen acronym or name) to list the "
        "patterns that correlate best with it and their marker genes.",
        f"Embedded in this page: the {len(names)} patterns (8-bit per pattern), the annotation, every gene's "
        f"coefficients (reconstructions are computed in the page) and the measured images of {n_measured} of the "
        f"{n_genes} experiments (5-bit; the marker and network genes first, at most {MAX_MEASURED_GENES}); "
        "results.h5ad has them all. The view needs a browser with DecompressionStream (2023 or later).",
    ], html=render(data))


def render(data: dict) -> str:
    """The widget's HTML: its markup, style, data (JSON, made safe inside ``<script>``) and script."""
    style = _package_text("atlas_view.css")
    script = _package_text("atlas_view.js")
    if "</script" in script.lower():
        raise ValueError("atlas_view.js must not contain '</script'")
    return (f"<style>{style}</style>{MARKUP}"
            f'<script type="application/json" id="osnmf-atlas-data">{_safe_json(data)}</script>'
            f"<script>{script}</script>")


MARKUP = """
<div id="osnmf-atlas" class="av">
 <div class="av-controls">
  <label>Pattern <select id="av-pattern"></select></label>
  <span class="av-planes" role="group" aria-label="plane">
   <button type="button" data-plane="coronal" class="av-on">coronal</button>
   <button type="button" data-plane="sagittal">sagittal</button>
   <button type="button" data-plane="horizontal">horizontal</button>
  </span>
  <label>Outline <select id="av-outline"><option value="coarse">coarse regions</option>
   <option value="medium">medium regions</option><option value="fine">all regions</option>
   <option value="off">off</option></select></label>
 </div>
 <div class="av-controls"><input type="range" id="av-slice" min="0" max="1" value="0" aria-label="section">
  <span id="av-slice-label"></span></div>
 <div class="av-row">
  <div class="av-figure"><canvas id="av-main"></canvas><div class="av-caption" id="av-main-caption"></div></div>
  <div class="av-colorbar"><span id="av-bar-max"></span><canvas class="av-lut" width="14" height="160"></canvas>
   <span>0</span></div>
 </div>
 <div class="av-hover" id="av-hover">Move the mouse over the section to name its regions.</div>
 <div class="av-info" id="av-pattern-info"></div>
 <div class="av-status" id="av-status">Loading the atlas view…</div>
 <h3>Gene</h3>
 <div class="av-controls"><input id="av-gene" list="av-gene-list" placeholder="gene symbol, e.g. a marker"
   autocomplete="off" aria-label="gene"><datalist id="av-gene-list"></datalist>
  <select id="av-gene-experiment" hidden aria-label="experiment"></select></div>
 <div class="av-info" id="av-gene-info"></div>
 <div class="av-gene" id="av-gene-panel" hidden>
  <div class="av-coefs" id="av-coefs"></div>
  <div class="av-figure"><canvas id="av-measured"></canvas><div class="av-caption">measured</div></div>
  <div class="av-figure"><canvas id="av-recon"></canvas><div class="av-caption">reconstructed</div></div>
  <div class="av-colorbar" title="99.5th percentile of the measured image"><span id="av-gene-max"></span>
   <canvas class="av-lut" width="14" height="120"></canvas><span>0</span></div>
 </div>
 <div class="av-networks" id="av-networks"></div>
 <h3>Region</h3>
 <div class="av-controls"><input id="av-region" list="av-region-list" placeholder="acronym or name, e.g. CA1"
   autocomplete="off" aria-label="region"><datalist id="av-region-list"></datalist></div>
 <div class="av-info" id="av-region-info"></div>
 <div id="av-region-panel"></div>
</div>
"""


def view_data(state, names: list[str]) -> dict:
    """Everything the view shows, as JSON-ready values (arrays zlib-compressed and base64-encoded)."""
    atlas, support = state.expr.atlas, state.impute.support
    regions = atlas.region_table()
    return {
        "shape": list(atlas.shape),
        "spacing_mm": [s / 1000 for s in atlas.spacing_um],
        # the slider's "AP 5.6 mm from grid front edge (not bregma)", per axis and section
        "position_labels": [[position_label(axis, i, atlas.spacing_um) for i in range(n)]
                            for axis, n in enumerate(atlas.shape)],
        "support": _pack(np.packbits(support.ravel())),
        "lut": base64.b64encode(_lut()).decode("ascii"),
        "regions": _regions(atlas, regions),
        "annotation": _annotation(atlas, regions.index.to_numpy()),
        "patterns": {**_patterns(state.sweep.components, names),
                     "peak": np.asarray(state.metrics.peak_sections, dtype=int).tolist()},  # (K, 3): AP, DV, ML
        "genes": _genes(state),
        "markers": _markers(state.markers.markers, state.sweep.k),
        "networks": [_network(json.loads(str(text))) for text in state.markers.networks_json],
        "correlations": _correlations(state.linking.correlations, regions.index.to_numpy(), state.sweep.k),
        "links": _links(state.linking.links_top, regions.index.to_numpy()),
    }


# ---- encoding ---------------------------------------------------------------------------------
def _pack(array: np.ndarray) -> str:
    """Little-endian bytes of ``array``, zlib-compressed, base64."""
    raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def _safe_json(data: dict) -> str:
    """Compact JSON that cannot end the ``<script>`` holding it (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _round(values, digits: int = 4) -> list:
    """Floats rounded for JSON; NaN and infinities → ``null``."""
    return [round(float(v), digits) if np.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def _lut() -> bytes:
    """The viridis colour map as 256 RGB triplets."""
    from matplotlib import colormaps

    return (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8).tobytes()


def _package_text(name: str) -> str:
    return resources.files("osnmf.report").joinpath(name).read_text(encoding="utf-8")


# ---- atlas ------------------------------------------------------------------------------------
def _regions(atlas, regions: pd.DataFrame) -> dict:
    """Voxel-owning regions in ontology order: acronym, name, level, voxels, parent and outline groups.

    ``coarse`` and ``medium`` give, for each region, the region whose boundary that outline draws:
    its ancestor at that level, or the region itself when it has none (or is above that level).
    """
    ids = regions.index.to_numpy()
    row = {int(s): i for i, s in enumerate(ids)}
    parents = [row.get(atlas.parent(int(s)), -1) for s in ids]
    return {"acronym": regions["acronym"].astype(str).tolist(), "name": regions["name"].astype(str).tolist(),
            "level": regions["level"].astype(str).tolist(), "voxels": regions["n_voxels"].astype(int).tolist(),
            "parent": parents,
            "coarse": [row[_group(atlas, int(s), set(atlas.coarse_ids))] for s in ids],
            "medium": [row[_group(atlas, int(s), set(atlas.medium_ids))] for s in ids]}


def _group(atlas, sid: int, level: set[int]) -> int:
    """``sid``'s ancestor (or itself) in ``level``; ``sid`` when none is."""
    return next((a for a in [sid, *atlas.ancestors(sid)] if a in level), sid)


def _annotation(atlas, ids: np.ndarray) -> str:
    """The annotation as 1 + the index of each voxel's region in ``ids`` (0 outside the brain), uint16."""
    lookup = {int(s): i + 1 for i, s in enumerate(ids)}
    labels, inverse = np.unique(atlas.annotation, return_inverse=True)
    index = np.array([lookup.get(int(s), 0) for s in labels], dtype=np.uint16)[inverse.ravel()]
    return _pack(index)


def _patterns(components: np.ndarray, names: list[str]) -> dict:
    """Each pattern over the support voxels, uint8 of its own maximum."""
    peak = components.max(axis=1).astype(np.float64)
    peak[peak <= 0] = 1.0
    levels = np.round(np.clip(components / peak[:, None], 0, 1) * 255).astype(np.uint8)
    return {"names": list(names), "max": _round(peak, 6), "data": _pack(levels)}


# ---- genes ------------------------------------------------------------------------------------
def _genes(state) -> dict:
    """Every kept experiment: symbol, id, coefficients (uint16 of each pattern's maximum), the
    reconstruction r, the display scale and, for a chosen few, the measured image."""
    X, coefs = state.impute.X, state.sweep.coefficients.astype(np.float64)
    expr = state.expr
    kept = np.asarray(state.impute.kept, dtype=int)
    coef_max = coefs.max(axis=0)
    coef_max[coef_max <= 0] = 1.0
    quantised = np.round(np.clip(coefs / coef_max, 0, 1) * 65535).astype(np.uint16)
    scale = np.array([_display_scale(row) for row in X])
    chosen = measured_genes(state.markers, len(kept))
    images = [np.round(np.clip(X[i] / scale[i], 0, 1) * GENE_LEVELS).astype(np.uint8) for i in chosen]
    return {
        "symbol": [str(g) for g in expr.genes[kept]],
        "experiment": [str(e) for e in np.asarray(expr.experiment_ids)[kept]],
        "coef": _pack(quantised), "coef_max": _round(coef_max, 6),
        "recon_r": _round(state.metrics.recon_nmf, 3), "scale": _round(scale, 6),
        "levels": GENE_LEVELS, "measured": [int(i) for i in chosen],
        "measured_data": _pack(np.concatenate(images)) if images else "",
    }


def _display_scale(row: np.ndarray) -> float:
    """The top of a gene's colour scale: the 99.5th percentile of its positive values."""
    positive = row[row > 0]
    top = float(np.percentile(positive, 99.5)) if positive.size else 0.0
    return top if top > 0 else 1.0


def measured_genes(markers, n: int, cap: int = MAX_MEASURED_GENES) -> list[int]:
    """Rows of the experiments whose measured image is embedded, at most ``cap``: the rank-1
    marker of every pattern, then rank 2, rank 3, then the network genes by importance."""
    table = markers.markers
    assigned = table[table["assigned"].astype(str) == "True"]
    order: list[int] = []
    for rank in (1, 2, 3):
        rows = assigned[assigned["marker_rank"].astype(int) == rank].sort_values("pattern")
        order += rows["experiment"].astype(int).tolist()
    symbols = table.drop_duplicates("experiment").set_index("experiment")["gene"].astype(str)
    by_symbol = {g: int(e) for e, g in symbols[::-1].items()}  # a symbol's first experiment
    nodes = []
    for text in markers.networks_json:
        nodes += [(float(nd.get("importance", 0)), str(nd["gene"])) for nd in json.loads(str(text))["nodes"]]
    order += [by_symbol[g] for _, g in sorted(nodes, reverse=True) if g in by_symbol]
    return [e for e in dict.fromkeys(order) if 0 <= e < n][:cap]


def _markers(markers: pd.DataFrame, k: int) -> list[list]:
    """Per pattern its top marker genes: ``[symbol, experiment row, importance]``."""
    assigned = markers[markers["assigned"].astype(str) == "True"]
    out = []
    for p in range(k):
        rows = assigned[assigned["pattern"].astype(int) == p].sort_values("marker_rank").head(MARKERS_PER_PATTERN)
        out.append([[str(g), int(e), round(float(v), 3)]
                    for g, e, v in zip(rows["gene"], rows["experiment"], rows["importance"], strict=True)])
    return out


def _network(graph: dict) -> dict:
    """A pattern's coexpression network: nodes ``[symbol, importance, hub]``, edges ``[i, j, r]``."""
    nodes = graph["nodes"]
    index = {nd["id"]: i for i, nd in enumerate(nodes)}
    edges = graph.get("links", graph.get("edges", []))
    return {"pattern": int(graph["graph"].get("pattern", 0)),
            "threshold": _round([graph["graph"].get("threshold", np.nan)], 6)[0],
            "nodes": [[str(nd["gene"]), round(float(nd.get("importance", 0)), 3), bool(nd.get("is_hub", False))]
                      for nd in nodes],
            "edges": [[index[e["source"]], index[e["target"]], round(float(e["r"]), 4)] for e in edges]}


# ---- regions ----------------------------------------------------------------------------------
def _correlations(correlations: pd.DataFrame, ids: np.ndarray, k: int) -> list[list]:
    """Pearson r of every region (rows, ``ids`` order) with every pattern; ``null`` where undefined."""
    table = correlations.pivot_table(index="region_id", columns="pattern_index", values="r", dropna=False)
    table = table.reindex(index=ids.astype(table.index.dtype), columns=range(k))
    return [_round(row, 3) for row in table.to_numpy(dtype=float)]


def _links(links_top: pd.DataFrame, ids: np.ndarray) -> list[list]:
    """Searched region combinations: ``[pattern, acronyms, r, [region indices]]``, best first."""
    row = {int(s): i for i, s in enumerate(ids)}
    out = []
    for _, link in links_top.sort_values("r", ascending=False).iterrows():
        members = [row[s] for s in _region_ids(link["region_ids"]) if s in row]
        out.append([int(link["pattern_index"]), str(link["acronyms"]), _round([link["r"]], 3)[0], members])
    return out


def _region_ids(value) -> list[int]:
    """Region ids of a combination, stored as a tuple or as its text ``"(477, 581)"``."""
    if isinstance(value, str):
        return [int(v) for v in re.findall(r"-?\d+", value)]
    return [int(v) for v in value]
