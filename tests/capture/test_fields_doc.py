"""The README's record-fields table is generated from the declaration and kept in step."""

from pathlib import Path

from capture.fields_doc import END, START, render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_matches_the_record_declaration():
    text = README.read_text()
    assert render(text) == text, "run: python -m capture.fields_doc"


def test_every_field_appears_once_in_the_table():
    from capture.schema import NAMES

    table = README.read_text().split(START)[1].split(END)[0]
    for name in NAMES:
        assert 1 == table.count(f"| `{name}` |"), name
