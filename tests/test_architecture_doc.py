"""docs/architecture.md's module table is the code's: written by scripts/architecture_table.py and
checked here, so it cannot go stale (a module added, removed or re-described, or a size that
moved by more than the script's slack, fails with the rerun command)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("architecture_table", ROOT / "scripts" / "architecture_table.py")
table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table)


def test_module_table_is_up_to_date():
    committed = table.parse(table.committed_table((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")))
    problems = table.stale(committed, table.module_rows())
    assert not problems, "docs/architecture.md is stale; run: python scripts/architecture_table.py\n" + "\n".join(
        problems)


def test_the_table_round_trips_and_the_check_sees_each_kind_of_drift(tmp_path):
    """The parser reads back what render writes; a new, a removed, a re-described and a grown
    module are each reported, a size within the slack is not."""
    src = tmp_path / "osnmf"
    (src / "sub").mkdir(parents=True)
    (src / "a.py").write_text('"""Alpha does one thing. Then more, e.g. this."""\n' + "x = 1\n" * 99)
    (src / "sub" / "b.py").write_text('"""Beta: see :func:`~osnmf.a.f` and ``b | c``, Fig. 2 of the paper."""\n')
    rows = table.module_rows(src)
    assert rows == [("a.py", "Alpha does one thing.", 100),
                    ("sub/b.py", "Beta: see `osnmf.a.f` and `b \\| c`, Fig. 2 of the paper.", 1)]
    rendered = table.render(rows)
    assert table.parse(rendered) == rows and rendered.endswith("| 2 modules | | 101 |")
    doc = f"intro\n{table.BEGIN}\nold\n{table.END}\noutro\n"
    assert table.committed_table(table.with_table(doc, rendered)) == rendered
    assert table.with_table(doc, rendered).startswith("intro\n") and doc.endswith(f"{table.END}\noutro\n")
    assert table.stale(rows, [("a.py", "Alpha does one thing.", 109), rows[1]]) == []  # within 10 lines
    drift = table.stale(rows, [("a.py", "Alpha does two things.", 120), ("c.py", "Gamma.", 5)])
    assert drift == ["a.py: 120 lines, the table says 100", "a.py: docstring now says 'Alpha does two things.'",
                     "c.py: not in the table", "sub/b.py: in the table, not in src"]
