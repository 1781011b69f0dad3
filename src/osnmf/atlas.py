"""The reference atlas: an annotation volume on the expression grid plus the structure ontology.

Volumes are ``(AP, DV, ML)``; on the packaged Allen 200 µm grid that is ``(67, 41, 58)``.
Structures can be named by integer id or by acronym everywhere.
"""

from __future__ import annotations

from functools import cached_property
from importlib import resources

import numpy as np
import pandas as pd
from scipy import sparse

from osnmf.errors import InputError
from osnmf.formats.metaimage import read_annotation_zip

COARSE_ACRONYMS = ("Isocortex", "OLF", "HPF", "CTXsp", "STR", "PAL", "TH", "HY", "MB", "P", "MY", "CB")
ROOT_ID = 997
# where grid positions are measured from: the grid's first voxel along each axis (its front, top
# and left edge), not a stereotaxic landmark such as bregma
GRID_ORIGIN = {"AP": "grid front edge", "DV": "grid top edge", "ML": "grid left edge"}
AXIS_NAMES = ("AP", "DV", "ML")


def position_mm(axis: str | int, index: int, spacing_um) -> float:
    """Millimetres of section ``index`` along ``axis`` from the grid's first section (``index × spacing``).

    ``spacing_um``: the voxel size along (AP, DV, ML) in µm.
    """
    a = AXIS_NAMES.index(axis) if isinstance(axis, str) else int(axis)
    return float(index) * float(spacing_um[a]) / 1000.0


def position_label(axis: str | int, index: int, spacing_um, short: bool = False) -> str:
    """The one label of a grid position: ``AP 5.6 mm from grid front edge (not bregma)``.

    Every "AP x mm" the package shows (montage tiles, the napari overlay, the report's atlas view)
    comes from here, so each states its origin. ``short`` drops "(not bregma)" for small tiles.
    """
    name = AXIS_NAMES[axis] if isinstance(axis, int) else str(axis)
    text = f"{name} {position_mm(name, index, spacing_um):.1f} mm from {GRID_ORIGIN[name]}"
    return text if short else f"{text} (not bregma)"


def axis_mm_label(axis: str) -> str:
    """Axis title of a panel drawn in millimetres: ``ML (mm from grid left edge)``."""
    return f"{axis} (mm from {GRID_ORIGIN[axis]})"


def _resource(name: str):
    return resources.files("osnmf.resources").joinpath(name)


def read_ontology(path) -> pd.DataFrame:
    """Read an Allen structure-tree CSV into a DataFrame indexed by structure id.

    Columns kept: acronym, name, parent_id (0 for the root), depth, graph_order, color.
    """
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the structure ontology ({exc})") from None
    needed = {"id", "acronym", "name", "parent_structure_id"}
    if not needed <= set(table.columns):
        raise InputError(f"{path}: ontology needs columns {sorted(needed)}")
    table = table[table["id"] != 0]
    onto = pd.DataFrame(
        {
            "acronym": table["acronym"].astype(str).to_numpy(),
            "name": table["name"].astype(str).to_numpy(),
            "parent_id": table["parent_structure_id"].fillna(0).astype(np.int64).to_numpy(),
            "depth": table.get("depth", pd.Series(0, index=table.index)).fillna(0).astype(int).to_numpy(),
            "graph_order": table.get("graph_order", pd.Series(range(len(table)), index=table.index))
            .fillna(-1)
            .astype(int)
            .to_numpy(),
            # hex triplets such as 019399 may have been stored as numbers: restore the leading zeros
            "color": table.get("color_hex_triplet", pd.Series("AAAAAA", index=table.index))
            .astype(str)
            .str.zfill(6)
            .to_numpy(),
        },
        index=pd.Index(table["id"].astype(np.int64).to_numpy(), name="id"),
    )
    if onto.index.has_duplicates:
        raise InputError(f"{path}: duplicate structure ids in the ontology")
    return onto


class Atlas:
    """Annotation volume + ontology.

    Parameters
    ----------
    annotation : integer structure ids, shape ``(AP, DV, ML)``; 0 = outside the brain.
    ontology : DataFrame indexed by structure id with columns acronym, name, parent_id, depth,
        graph_order, color (see :func:`read_ontology`).
    spacing_um : voxel size along (AP, DV, ML) in micrometres.
    """

    def __init__(self, annotation: np.ndarray, ontology: pd.DataFrame, spacing_um=(200.0, 200.0, 200.0)):
        annotation = np.asarray(annotation)
        if annotation.ndim != 3:
            raise InputError(f"annotation must be 3-D (AP, DV, ML), got shape {annotation.shape}")
        unknown = np.setdiff1d(np.unique(annotation[annotation > 0]), ontology.index.to_numpy())
        if unknown.size:
            raise InputError(f"annotation has {unknown.size} structure ids not in the ontology (e.g. {unknown[0]})")
        self.annotation = annotation.astype(np.uint32)
        self.ontology = ontology
        self.spacing_um = tuple(float(s) for s in spacing_um)
        self._by_acronym = {a: int(i) for i, a in zip(ontology.index, ontology["acronym"], strict=True)}

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def default(cls) -> Atlas:
        """The packaged Allen P56 200 µm grid annotation and structure ontology."""
        return _default_atlas()

    @classmethod
    def from_files(cls, annotation_zip, ontology_csv=None) -> Atlas:
        """Build from an Allen grid annotation zip and (optionally) an ontology CSV."""
        annotation, spacing = read_annotation_zip(annotation_zip)
        if ontology_csv is None:
            with resources.as_file(_resource("structure_tree.csv.gz")) as packaged:
                onto = read_ontology(packaged)
        else:
            onto = read_ontology(ontology_csv)
        return cls(annotation, onto, spacing)

    # ---- shape --------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.annotation.shape)

    @cached_property
    def brain_mask(self) -> np.ndarray:
        """Boolean ``(AP, DV, ML)``: voxels with any structure id."""
        return self.annotation > 0

    @property
    def n_brain_voxels(self) -> int:
        return int(self.brain_mask.sum())

    @cached_property
    def brain_coords(self) -> np.ndarray:
        """Integer grid coordinates ``(n_brain_voxels, 3)`` of the brain voxels in C order."""
        return np.argwhere(self.brain_mask)

    # ---- ontology navigation ------------------------------------------------------------
    def id_of(self, key: int | str) -> int:
        """Structure id for an id or an acronym."""
        if isinstance(key, str) and not key.lstrip("-").isdigit():
            if key not in self._by_acronym:
                raise InputError(f"unknown structure acronym {key!r}")
            return self._by_acronym[key]
        sid = int(key)
        if sid not in self.ontology.index:
            raise InputError(f"unknown structure id {sid}")
        return sid

    def acronym(self, key: int | str) -> str:
        return str(self.ontology.at[self.id_of(key), "acronym"])

    def name(self, key: int | str) -> str:
        return str(self.ontology.at[self.id_of(key), "name"])

    def parent(self, key: int | str) -> int | None:
        pid = int(self.ontology.at[self.id_of(key), "parent_id"])
        return pid if pid in self.ontology.index else None

    @cached_property
    def _children(self) -> dict[int, list[int]]:
        kids: dict[int, list[int]] = {int(i): [] for i in self.ontology.index}
        order = self.ontology.sort_values("graph_order")
        for sid, pid in zip(order.index, order["parent_id"], strict=True):
            if int(pid) in kids:
                kids[int(pid)].append(int(sid))
        return kids

    def children(self, key: int | str, acronyms: bool | None = None) -> list[int] | list[str]:
        """Direct children, in ontology (graph) order: acronyms when ``key`` is an acronym
        (``children("HPF")`` → ``["HIP", "RHP"]``), ids when it is an id; ``acronyms=True/False``
        asks for one or the other whatever the key."""
        kids = list(self._children[self.id_of(key)])
        if acronyms if acronyms is not None else isinstance(key, str):
            return [str(self.ontology.at[k, "acronym"]) for k in kids]
        return kids

    def ancestors(self, key: int | str) -> list[int]:
        """Ancestors from the parent up to the root."""
        out, node = [], self.parent(key)
        while node is not None:
            out.append(node)
            node = self.parent(node)
        return out

    def descendants(self, key: int | str, include_self: bool = False) -> list[int]:
        """All descendants (depth first, ontology order)."""
        start = self.id_of(key)
        out, stack = [], list(reversed(self._children[start]))
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(self._children[node]))
        return [start, *out] if include_self else out

    # ---- masks --------------------------------------------------------------------------
    def mask(self, key: int | str) -> np.ndarray:
        """Boolean ``(AP, DV, ML)`` mask of a node: the union of its own and its descendants' voxels."""
        ids = np.array(self.descendants(key, include_self=True), dtype=np.uint32)
        return np.isin(self.annotation, ids)

    def nodes_at(self, voxel: tuple[int, int, int]) -> list[int]:
        """Nodes covering a voxel, from the annotated leaf up to the root ([] outside the brain)."""
        sid = int(self.annotation[tuple(voxel)])
        return [] if sid == 0 else [sid, *self.ancestors(sid)]

    @cached_property
    def membership(self) -> sparse.csr_matrix:
        """Sparse boolean ``(n_voxel_owning_nodes, n_brain_voxels)``: node i covers brain voxel j.

        Rows follow :attr:`region_ids`; columns follow :attr:`brain_coords`.
        """
        labels = self.annotation[self.brain_mask].astype(np.int64)
        leaf_ids, leaf_index = np.unique(labels, return_inverse=True)
        rows, cols = [], []
        row_of = {sid: r for r, sid in enumerate(self.region_ids)}
        for li, leaf in enumerate(leaf_ids):
            voxels = np.flatnonzero(leaf_index == li)
            for node in [int(leaf), *self.ancestors(int(leaf))]:
                rows.append(np.full(voxels.size, row_of[node]))
                cols.append(voxels)
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        data = np.ones(rows.size, dtype=bool)
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(self.region_ids), labels.size))

    @cached_property
    def region_ids(self) -> np.ndarray:
        """Ids of every ontology node that owns at least one voxel, in ontology (graph) order."""
        leaves = {int(s) for s in np.unique(self.annotation[self.brain_mask])}
        owners = set(leaves)
        for leaf in leaves:
            owners.update(self.ancestors(leaf))
        order = self.ontology.loc[sorted(owners)].sort_values("graph_order")
        return order.index.to_numpy(dtype=np.int64)

    def region_table(self) -> pd.DataFrame:
        """One row per voxel-owning node: id, acronym, name, level, depth, graph_order, n_voxels."""
        table = self.ontology.loc[self.region_ids, ["acronym", "name", "depth", "graph_order"]].copy()
        table.insert(2, "level", [self.level(i) for i in table.index])
        table["n_voxels"] = np.asarray(self.membership.sum(axis=1)).ravel()
        return table

    # ---- region levels (spec §1) --------------------------------------------------------
    @cached_property
    def coarse_ids(self) -> list[int]:
        """The 12 coarse regions: Isocortex, OLF, HPF, CTXsp, STR, PAL, TH, HY, MB, P, MY, CB."""
        return [self.id_of(a) for a in COARSE_ACRONYMS if a in self._by_acronym]

    @cached_property
    def medium_ids(self) -> list[int]:
        """Children of the coarse regions (62 in this ontology; the paper's CCFv3 2017 has 66)."""
        return [c for sid in self.coarse_ids for c in self.children(sid)]

    @cached_property
    def _level(self) -> dict[int, str]:
        level = {sid: "coarse" for sid in self.coarse_ids}
        level.update({sid: "medium" for sid in self.medium_ids})
        for sid in self.medium_ids:
            level.update({d: "fine" for d in self.descendants(sid)})
        return level

    def level(self, key: int | str) -> str:
        """"coarse", "medium", "fine" (below medium) or "above" (root, grey, CH, fibre tracts …)."""
        return self._level.get(self.id_of(key), "above")


_DEFAULT: Atlas | None = None


def _default_atlas() -> Atlas:
    global _DEFAULT  # cached read of packaged, immutable data
    if _DEFAULT is None:
        with resources.as_file(_resource("P56_Mouse_gridAnnotation.zip")) as zpath:
            _DEFAULT = Atlas.from_files(zpath)
    return _DEFAULT
