"""The matrix's output: the table, the failure details and the JSON report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from scripts.matrix.run import Cell


def render_table(cells: Sequence[Cell]) -> str:
    """Rows `frontend -> backend`, columns capabilities, then every n/a and FAIL reason."""
    caps = list(dict.fromkeys(c.capability for c in cells))
    rows = list(dict.fromkeys(c.row for c in cells))
    by_key = {(c.row, c.capability): c for c in cells}
    labels = {row: row for row in rows}
    first = max([len(v) for v in labels.values()] + [len("frontend -> backend")])
    widths = [max(len(c), 4) for c in caps]
    lines = ["  ".join(["frontend -> backend".ljust(first)] + [c.ljust(w) for c, w in zip(caps, widths)]).rstrip()]
    lines.append("  ".join(["-" * first] + ["-" * w for w in widths]))
    for row in rows:
        marks = []
        for cap, w in zip(caps, widths):
            cell = by_key.get((row, cap))
            marks.append(("" if cell is None else TABLE_MARK[cell.status]).ljust(w))
        lines.append("  ".join([labels[row].ljust(first)] + marks).rstrip())
    counts = {s: sum(1 for c in cells if c.status == s) for s in TABLE_MARK}
    lines += ["", f"{len(cells)} cells: {counts['pass']} pass, {counts['fail']} fail, {counts['n/a']} n/a"]
    for status, title in (("fail", "FAIL"), ("n/a", "n/a")):
        listed = [c for c in cells if c.status == status]
        if listed:
            lines += ["", f"{title}:"]
            lines += [f"  {c.row} / {c.capability}: {c.reason}" for c in listed]
    return "\n".join(lines)


TABLE_MARK = {"pass": "PASS", "fail": "FAIL", "n/a": "n/a"}


def render_details(cells: Sequence[Cell]) -> str:
    out = []
    for c in cells:
        if c.status == "fail" and c.detail:
            out += [f"=== {c.row} / {c.capability}: {c.reason}", c.detail, ""]
    return "\n".join(out)


def write_report(cells: Sequence[Cell], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [c.to_json() for c in cells]}, indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")
