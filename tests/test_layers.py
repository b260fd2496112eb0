"""The layers stay visible in the imports: the engine never imports the studio, the web or the CLI; the
studio never imports the web, the CLI or FastAPI."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "lorastudio"
FORBIDDEN = {
    "engine": ("lorastudio.studio", "lorastudio.web", "lorastudio.cli", "fastapi", "sqlalchemy"),
    "studio": ("lorastudio.web", "lorastudio.cli", "fastapi", "starlette"),
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer):
    files = list((SRC / layer).rglob("*.py"))
    assert files
    bad = [(f.relative_to(SRC), name) for f in files for name in _imports(f)
           if any(name == x or name.startswith(x + ".") for x in FORBIDDEN[layer])]  # fmt: skip
    assert bad == []
