"""The layers stay visible in the imports: the engine never imports the studio, the web or the CLI; the
studio never imports the web, the CLI or FastAPI. The studio and the web use the engine through its public
surface (`lorastudio.engine`) and each studio area through its package; and no two modules import each other,
however far round.

Every import statement counts: at the top, inside functions (the lazy ones) and under TYPE_CHECKING."""

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "lorastudio"
FORBIDDEN = {
    "engine": ("lorastudio.studio", "lorastudio.web", "lorastudio.cli", "fastapi", "sqlalchemy"),
    "studio": ("lorastudio.web", "lorastudio.cli", "fastapi", "starlette"),
}
# Import cycles someone else owns and has yet to break: the modules of the cycle, and why it is allowed for now.
# Remove an entry when its cycle is gone (the test says so).
ALLOWED_CYCLES: dict[frozenset[str], str] = {}  # none: a cycle that must stay would be named here, with why


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
    bad = [
        (f.relative_to(SRC), name)
        for f in files
        for name in _imports(f)
        if any(name == x or name.startswith(x + ".") for x in FORBIDDEN[layer])
    ]
    assert bad == []


# --- the module graph -------------------------------------------------------------------------------------------


def _name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    """Every lorastudio module by its dotted name (a package by its own name, for its __init__.py)."""
    return {_name(p): p for p in SRC.rglob("*.py")}


def _is_package(name: str) -> bool:
    return _modules()[name].name == "__init__.py"


@dataclass(frozen=True)
class Import:
    """One imported thing, as written: `from module import name`, or `import module` (name None)."""

    file: Path
    line: int
    module: str
    name: str | None

    def __str__(self) -> str:
        text = f"import {self.module}" if self.name is None else f"from {self.module} import {self.name}"
        return f"{self.file.relative_to(SRC.parent)}:{self.line}: {text}"

    def paths(self) -> set[str]:
        """The dotted paths this import reaches: the module, and `module.name` where that is a module (and not
        a name the package's __init__ offers in its place)."""
        if self.name is not None and _submodule(self.module, self.name):
            return {self.module, f"{self.module}.{self.name}"}
        return {self.module}


def _submodule(module: str, name: str) -> bool:
    """Whether `from module import name` gives a module: one of that name, which the package's __init__ does not
    replace with a name of its own (`from .writes import writes` offers the function)."""
    if f"{module}.{name}" not in _modules():
        return False
    return not _is_package(module) or _reexports(module).get(name, (module, name)) == (module, name)


@cache
def _statements(name: str) -> tuple[Import, ...]:
    """Every import in a module, relative ones made absolute."""
    path = _modules()[name]
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            found += [Import(path, node.lineno, module, a.name) for a in node.names]
    return tuple(found)


@cache
def _reexports(package: str) -> dict[str, tuple[str, str]]:
    """What a package's __init__ imports, by the name it offers: (the module it comes from, its name there)."""
    return {
        imp.name: (imp.module, imp.name)
        for imp in _statements(package)
        if imp.name is not None and imp.name != "*" and imp.module.startswith("lorastudio")
    }


def _defined_by(module: str, name: str | None, seen: frozenset = frozenset()) -> set[str]:
    """The modules an import really depends on: the module that defines the name, following a package's
    re-exports; a whole package (a namespace) depends on every module whose names it offers."""
    modules = _modules()
    if module not in modules:  # `import lorastudio.a.b` names a module; the nearest known one counts
        while module and module not in modules:
            module = module.rpartition(".")[0]
        if not module.startswith("lorastudio"):
            return set()
        name = None
    if name is not None and _submodule(module, name):
        module, name = f"{module}.{name}", None
    if (module, name) in seen:
        return set()
    seen = seen | {(module, name)}
    if not _is_package(module):
        return {module}
    offered = _reexports(module)
    if name is None:  # the package as a namespace
        found = {module}
        for source, original in offered.values():
            found |= _defined_by(source, original, seen)
        return found
    if name in offered:
        return _defined_by(*offered[name], seen)
    return {module}  # defined in the package's own __init__


@cache
def _graph() -> dict[str, dict[str, Import]]:
    """module -> {module it depends on: the import that says so}. A package's __init__ re-exporting its own
    modules is no dependency of the package on them (an importer of a name goes straight to the module that
    defines it)."""
    graph: dict[str, dict[str, Import]] = {}
    for name in _modules():
        edges = graph.setdefault(name, {})
        for imp in _statements(name):
            if not imp.module.startswith("lorastudio"):
                continue
            for target in _defined_by(imp.module, imp.name):
                own = _is_package(name) and target.startswith(name + ".")
                if target != name and not own:
                    edges.setdefault(target, imp)
    return graph


def _cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(node: str) -> None:  # iterative enough: the graph is a few hundred modules deep at most
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return groups


def _loop(graph: dict[str, dict[str, Import]], group: list[str]) -> list[Import]:
    """One way round a cycle, as the imports that make it (shortest from the group's first module)."""
    members, start = set(group), group[0]
    paths = {start: []}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt, imp in graph[node].items():
            if nxt == start:
                return paths[node] + [imp]
            if nxt in members and nxt not in paths:
                paths[nxt] = paths[node] + [imp]
                queue.append(nxt)
    return []


def test_no_import_cycles():
    graph = _graph()
    problems, seen = [], set()
    for group in _cycles(graph):
        seen.add(frozenset(group))
        if frozenset(group) in ALLOWED_CYCLES:
            continue
        steps = "\n    ".join(str(imp) for imp in _loop(graph, group))
        problems.append(f"import cycle among {', '.join(group)}:\n    {steps}")
    stale = [", ".join(sorted(c)) for c in ALLOWED_CYCLES if c not in seen]
    problems += [f"ALLOWED_CYCLES lists a cycle that is gone; remove its entry: {c}" for c in stale]
    assert not problems, "rule: no import cycle among lorastudio modules\n" + "\n".join(problems)


# --- the engine's surface and the studio's areas ----------------------------------------------------------------


def _face_imports() -> Iterator[tuple[str, Import, set[str]]]:
    """Every import in the studio and the web: importer, the import, the dotted paths it reaches."""
    for name in sorted(_modules()):
        if name.startswith(("lorastudio.studio.", "lorastudio.web.")) or name in (
            "lorastudio.studio",
            "lorastudio.web",
        ):
            for imp in _statements(name):
                yield name, imp, imp.paths()


def test_studio_and_web_use_the_engine_through_its_surface():
    bad = [
        f"{imp}  (reaches {path})"
        for _, imp, paths in _face_imports()
        for path in sorted(paths)
        if path.startswith("lorastudio.engine.")
    ]
    assert not bad, "rule: the studio and the web import the engine only as `lorastudio.engine`\n" + "\n".join(bad)


def _area(name: str) -> str | None:
    """The studio area a dotted path lies in (a package right under lorastudio.studio), if any."""
    parts = name.split(".")
    if len(parts) < 3 or parts[:2] != ["lorastudio", "studio"]:
        return None
    area = ".".join(parts[:3])
    return parts[2] if area in _modules() and _is_package(area) else None


def test_an_area_is_used_through_its_package():
    bad = []
    for importer, imp, paths in _face_imports():
        for path in sorted(paths):
            area = _area(path)
            inside = path.count(".") > 2  # lorastudio.studio.<area>.<something>
            if area and inside and _area(importer) != area:
                bad.append(f"{imp}  (reaches {path}; use lorastudio.studio.{area})")
    assert not bad, "rule: outside a studio area, import only the area's package, never its modules\n" + "\n".join(bad)


def test_the_engine_surface_is_lazy_and_complete():
    import lorastudio.engine as engine

    surface = engine._PUBLIC
    assert sorted(surface) == engine.__all__ and set(surface) <= set(dir(engine))
    # The imports for type checkers name the same things from the same modules.
    typed = {
        imp.name: imp.module
        for imp in _statements("lorastudio.engine")
        if imp.name is not None and imp.module.startswith("lorastudio.engine.")
    }
    assert typed == surface
    for name, module in surface.items():  # each name is defined (not re-exported) where the table says
        assert name in _names_defined(module), f"{module} does not define {name}"
    # Importing the engine, as the web does, loads no ML library.
    code = "import sys, lorastudio.engine; print([m for m in ('torch', 'diffusers', 'pydantic') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        engine.nope  # noqa: B018


def _names_defined(module: str) -> set[str]:
    tree = ast.parse(_modules()[module].read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names
