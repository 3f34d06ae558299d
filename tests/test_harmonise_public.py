"""What other modules need of the mapping engine they take by public names (etl/transform/harmonise.py
`value_reader`, `given_reader`, `birth_dates`, `screened_fields`): its private names may change with it alone."""

import ast
from pathlib import Path

ETL = Path(__file__).parents[1] / "etl"


def test_no_module_imports_a_private_name_of_harmonise() -> None:
    private = sorted(f"{path.relative_to(ETL.parent)}: {alias.name}" for path in ETL.rglob("*.py")
                     for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.ImportFrom) and node.module == "etl.transform.harmonise"
                     for alias in node.names if alias.name.startswith("_"))
    assert private == []
