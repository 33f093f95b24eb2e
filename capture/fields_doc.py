"""The record-fields table of the README, generated from the record declaration.

``python -m capture.fields_doc`` rewrites the table between the markers in README.md; a test
fails when the README and the declaration disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from capture.schema import FIELDS, SCHEMA_VERSION

START = "<!-- record-fields:start -->"
END = "<!-- record-fields:end -->"


def fields_table() -> str:
    lines = [
        f"Schema version {SCHEMA_VERSION}: {len(FIELDS)} fields, "
        f"{sum(f.feature for f in FIELDS)} of them model features.",
        "",
        "| field | type | layer | feature | meaning |",
        "|---|---|---|---|---|",
    ]
    for f in FIELDS:
        lines.append(
            f"| `{f.name}` | {f.type} | {f.layer} | {'yes' if f.feature else 'no'} | {f.meaning} |"
        )
    return "\n".join(lines)


def render(readme: str) -> str:
    """``readme`` with the table between the markers replaced by the current one."""
    head, sep, rest = readme.partition(START)
    _, sep_end, tail = rest.partition(END)
    if not sep or not sep_end:
        raise ValueError(f"README.md lacks the {START} ... {END} markers")
    return f"{head}{START}\n{fields_table()}\n{END}{tail}"


def main() -> int:
    path = Path(__file__).resolve().parent.parent / "README.md"
    path.write_text(render(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
