"""Write the module table of docs/architecture.md from the code: every module of ``src/osnmf``, the
first sentence of its docstring and its line count, between the table's two marker lines.

    python scripts/architecture_table.py           # rewrite the table
    python scripts/architecture_table.py --check   # exit 1 when the committed table is stale

tests/test_architecture_doc.py runs the check's comparison (module names and summaries exact,
line counts within :data:`SIZE_SLACK`), so the table cannot go stale.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "osnmf"
DOC = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- BEGIN module table: written by scripts/architecture_table.py, do not edit by hand -->"
END = "<!-- END module table -->"
HEADER = "| module | what it is (its docstring's first sentence) | lines |\n|---|---|---:|"
SIZE_SLACK = (0.10, 10)  # a committed size may differ by 10 % or 10 lines, whichever is larger


def summary(docstring: str | None) -> str:
    """The first sentence of a docstring's first paragraph, Sphinx roles turned into code spans."""
    first = " ".join((docstring or "").strip().split("\n\n")[0].split())
    end = re.search(r"\.(?=\s+[A-Z`(]|$)", first)  # not after "Fig." or "e.g." inside a sentence
    sentence = first[: end.start() + 1] if end else first
    sentence = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", sentence)
    return sentence.replace("``", "`").replace("|", "\\|")


def module_rows(src: Path = SRC) -> list[tuple[str, str, int]]:
    """``(module path under osnmf/, summary, line count)`` of every module, sorted by path."""
    rows = []
    for path in sorted(src.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rows.append((path.relative_to(src).as_posix(), summary(ast.get_docstring(ast.parse(text))),
                     len(text.splitlines())))
    return rows


def render(rows: list[tuple[str, str, int]]) -> str:
    body = "\n".join(f"| `{name}` | {text} | {lines} |" for name, text, lines in rows)
    total = sum(lines for *_, lines in rows)
    return f"{HEADER}\n{body}\n| {len(rows)} modules | | {total} |"


def parse(table: str) -> list[tuple[str, str, int]]:
    """The rows of a rendered table (the inverse of :func:`render`, total line left out)."""
    rows = []
    for line in table.splitlines()[2:]:
        match = re.fullmatch(r"\| `(.+?)` \| (.*) \| (\d+) \|", line)
        if match:
            rows.append((match[1], match[2], int(match[3])))
    return rows


def committed_table(doc: str) -> str:
    if doc.count(BEGIN) != 1 or doc.count(END) != 1:
        raise SystemExit(f"{DOC}: needs exactly one pair of marker lines {BEGIN!r} … {END!r}")
    return doc.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def with_table(doc: str, table: str) -> str:
    before, rest = doc.split(BEGIN, 1)
    return f"{before}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}"


def stale(committed: list[tuple[str, str, int]], current: list[tuple[str, str, int]]) -> list[str]:
    """What differs: a module added, removed or re-described, or a size beyond :data:`SIZE_SLACK`."""
    old, new = {n: (t, s) for n, t, s in committed}, {n: (t, s) for n, t, s in current}
    problems = [f"{n}: not in the table" for n in new.keys() - old.keys()]
    problems += [f"{n}: in the table, not in src" for n in old.keys() - new.keys()]
    for name in sorted(old.keys() & new.keys()):
        (text_old, size_old), (text, size) = old[name], new[name]
        if text_old != text:
            problems.append(f"{name}: docstring now says {text!r}")
        if abs(size - size_old) > max(SIZE_SLACK[0] * size_old, SIZE_SLACK[1]):
            problems.append(f"{name}: {size} lines, the table says {size_old}")
    return sorted(problems)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report whether the committed table is stale")
    args = ap.parse_args()
    doc, rows = DOC.read_text(encoding="utf-8"), module_rows()
    if args.check:
        problems = stale(parse(committed_table(doc)), rows)
        print("\n".join(problems) or "docs/architecture.md: module table up to date")
        return 1 if problems else 0
    DOC.write_text(with_table(doc, render(rows)), encoding="utf-8")
    print(f"{DOC}: {len(rows)} modules, {sum(r[2] for r in rows)} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
