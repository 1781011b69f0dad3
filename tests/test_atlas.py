"""The packaged atlas: orientation, masks and ontology navigation against independent computations."""

import importlib.resources
import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import reference_file

from osnmf.atlas import Atlas
from osnmf.errors import InputError

ANNOTATION = reference_file("aba/P56_Mouse_gridAnnotation.zip", "P56_Mouse_gridAnnotation.zip")
ONTOLOGY = reference_file("aba/structure_tree.csv", "structure_tree.csv.gz")


def _raw_annotation():
    """The annotation read straight from the reference zip with numpy, header parsed by hand."""
    with zipfile.ZipFile(ANNOTATION) as zf:
        header = zf.read("gridAnnotation.mhd").decode()
        raw = zf.read("gridAnnotation.raw")
    dims = next(line for line in header.splitlines() if line.startswith("DimSize")).split("=")[1]
    dims = tuple(int(v) for v in dims.split())
    # MetaImage: x varies fastest, so the C-order array is (z, y, x)
    return dims, np.frombuffer(raw, "<u4").reshape(dims[::-1])


def test_shape_and_values_match_file(atlas):
    dims, zyx = _raw_annotation()
    assert dims == (67, 41, 58)
    assert atlas.shape == dims  # (AP, DV, ML) = file (x, y, z)
    np.testing.assert_array_equal(atlas.annotation, zyx.transpose(2, 1, 0))
    assert atlas.n_brain_voxels == 62529 == int((zyx > 0).sum())
    assert atlas.spacing_um == (200.0, 200.0, 200.0)


def _centroid(atlas, key):
    return np.argwhere(atlas.mask(key)).mean(axis=0)


def test_known_anatomy_orientation(atlas):
    mob, ctx, cb, my, pons = (_centroid(atlas, k) for k in ("MOB", "Isocortex", "CB", "MY", "P"))
    # AP axis 0: olfactory bulb anterior, cerebellum posterior
    assert mob[0] < ctx[0] < cb[0]
    assert mob[0] < 10 and cb[0] > 50
    # DV axis 1 grows ventrally: cortex and cerebellum dorsal to pons and medulla
    assert cb[1] < pons[1] and cb[1] < my[1]
    assert ctx[1] < atlas.shape[1] / 2
    # ML axis 2: midline structures centred
    assert abs(cb[2] - (atlas.shape[2] - 1) / 2) < 1


def test_hemispheres_mirror(atlas):
    mirrored = atlas.annotation[:, :, ::-1]
    brain = atlas.brain_mask
    assert (mirrored > 0)[brain].mean() > 0.99
    assert (mirrored == atlas.annotation)[brain].mean() > 0.89
    # shifting the mirror by one voxel is clearly worse: the midline sits between ML 28 and 29
    shifted = np.roll(mirrored, 1, axis=2)
    assert (shifted == atlas.annotation)[brain].mean() < 0.6


def _brute_force_owners():
    tree = pd.read_csv(ONTOLOGY)
    paths = dict(zip(tree["id"], tree["structure_id_path"], strict=True))
    return tree, paths


def test_masks_against_structure_paths(atlas):
    tree, paths = _brute_force_owners()
    ann = atlas.annotation
    leaf_ids = np.unique(ann[ann > 0])
    owners = set()
    for leaf in leaf_ids:
        owners.update(int(x) for x in paths[leaf].strip("/").split("/"))
    assert len(owners) == 843
    assert set(atlas.region_ids.tolist()) == owners
    rng = np.random.default_rng(0)
    for sid in [315, 507, 1089, 512, *rng.choice(sorted(owners), 25, replace=False).tolist()]:
        # brute force: a voxel belongs to sid when sid is on its leaf's structure_id_path
        inside = [leaf for leaf in leaf_ids if f"/{sid}/" in paths[leaf]]
        expected = np.isin(ann, inside)
        np.testing.assert_array_equal(atlas.mask(int(sid)), expected)
        row = int(np.flatnonzero(atlas.region_ids == sid)[0])
        member = atlas.membership[row].toarray().ravel()
        np.testing.assert_array_equal(member, expected[atlas.brain_mask])


def test_navigation(atlas):
    tree, paths = _brute_force_owners()
    iso = atlas.id_of("Isocortex")
    assert iso == 315 and atlas.acronym(315) == "Isocortex"
    assert atlas.parent("Isocortex") == atlas.id_of("CTXpl")
    assert atlas.ancestors("Isocortex")[-1] == 997
    expected_path = [int(x) for x in paths[iso].strip("/").split("/")]
    assert atlas.ancestors(iso) == expected_path[:-1][::-1]
    kids = set(tree.loc[tree["parent_structure_id"] == iso, "id"])
    assert set(atlas.children(iso)) == kids
    desc = {int(i) for i, p in paths.items() if f"/{iso}/" in str(p) and i != iso}
    assert set(atlas.descendants(iso)) == desc
    voxel = tuple(np.argwhere(atlas.mask("CA1"))[0])
    nodes = atlas.nodes_at(voxel)
    assert atlas.id_of("CA1") in nodes and atlas.id_of("HPF") in nodes and nodes[-1] == 997
    assert atlas.nodes_at((0, 0, 0)) == []
    with pytest.raises(InputError):
        atlas.id_of("NotARegion")


def test_levels(atlas):
    assert len(atlas.coarse_ids) == 12
    assert [atlas.acronym(i) for i in atlas.coarse_ids][:3] == ["Isocortex", "OLF", "HPF"]
    assert len(atlas.medium_ids) == 62  # children of the 12 coarse regions in this ontology
    assert atlas.level("CB") == "coarse" and atlas.level("CBX") == "medium"
    assert atlas.level("CA1") == "fine" and atlas.level("root") == "above"
    table = atlas.region_table()
    assert len(table) == 843 and table.loc[997, "n_voxels"] == 62529


def test_atlas_rejects_unknown_ids(atlas):
    bad = atlas.annotation.copy()
    bad[0, 0, 0] = 123456789
    with pytest.raises(InputError, match="not in the ontology"):
        Atlas(bad, atlas.ontology)


def test_position_label_states_its_origin():
    """One label for every grid position: index × spacing in mm, from the grid's first voxel."""
    from osnmf.atlas import axis_mm_label, position_label, position_mm

    spacing = (200.0, 100.0, 25.0)
    assert position_mm("AP", 28, spacing) == pytest.approx(5.6)
    assert position_label("AP", 28, spacing) == "AP 5.6 mm from grid front edge (not bregma)"
    assert position_label(1, 7, spacing, short=True) == "DV 0.7 mm from grid top edge"
    assert position_label("ML", 0, spacing) == "ML 0.0 mm from grid left edge (not bregma)"
    assert axis_mm_label("AP") == "AP (mm from grid front edge)"


def test_children_answer_in_the_kind_asked():
    """An acronym gives acronyms, an id gives ids; both on request (the structure CSV as reference)."""
    tree = pd.read_csv(importlib.resources.files("osnmf.resources").joinpath("structure_tree.csv.gz"))
    atlas = Atlas.default()
    hpf = int(tree.loc[tree["acronym"] == "HPF", "id"].iloc[0])
    kids = tree[tree["parent_structure_id"] == hpf].sort_values("graph_order")
    assert atlas.children("HPF") == kids["acronym"].tolist() == ["HIP", "RHP"]
    assert atlas.children(hpf) == kids["id"].tolist()
    assert atlas.children("HPF", acronyms=False) == kids["id"].tolist()
    assert atlas.children(hpf, acronyms=True) == ["HIP", "RHP"]
