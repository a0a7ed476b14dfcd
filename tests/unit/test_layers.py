"""The package's import structure, measured from the source with ``ast`` (docs/architecture.md, "The map").

Three rules: no import cycle between the package's modules (imports inside functions count, ``if
TYPE_CHECKING:`` blocks do not); no import against the layers (a module imports its own layer or lower
ones, and only the two ``python -m`` shims import ``cli/``); no two library modules with one file name
outside ``cli/`` and ``datasets/prepare/``, which mirror what they serve. Imports by name at run time
(``importlib``, ``pkgutil``, mmengine's registry ``locations``) are not statements and are not counted.
"""

from __future__ import annotations

import ast
from collections import Counter, defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cliptrase"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # (layer, its modules and sub-packages), lowest first: a module imports its own layer and lower ones only.
    ("leaf", ("cliptrase", "cliptrase.errors", "cliptrase.paths", "cliptrase.registry", "cliptrase.utils")),
    ("models", ("cliptrase.models",)),
    ("method", ("cliptrase.method",)),
    ("datasets", ("cliptrase.datasets",)),
    ("protocols", ("cliptrase.protocols", "cliptrase.config")),  # config: the schemas validate every group
    ("inference", ("cliptrase.inference",)),
    ("records", ("cliptrase.records",)),  # below engine: the per-image hook writes per_image.npz, a record
    ("engine", ("cliptrase.engine",)),
    ("stats", ("cliptrase.stats",)),
    ("reporting", ("cliptrase.reporting",)),
    ("harness", ("cliptrase.harness",)),
    ("reproduce", ("cliptrase.reproduce",)),
    ("cli", ("cliptrase.cli", "cliptrase.__main__", "cliptrase.eval")),
)
"""The layers of docs/architecture.md ("The map"). ``cliptrase`` stands for the package's ``__init__`` alone;
any other entry that is a sub-package stands for every module in it."""

CLI_SHIMS = ("cliptrase.__main__", "cliptrase.eval")
"""The two ``python -m`` entry shims: the only modules outside ``cli/`` that import it."""

KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
    # (importer, imported): why it is allowed for now. Empty: every import follows the layers.
}

KNOWN_SHARED_NAMES: dict[str, str] = {}
"""File names used twice for now, with why; the test fails once such a name is no longer shared."""

MIRRORED = ("cli", "datasets/prepare")
"""Folders whose modules are named after what they serve (``cli/data.py`` serves ``datasets/``)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Modules of the package that ``tree`` imports, at any depth, ``if TYPE_CHECKING:`` blocks aside."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "cliptrase")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] == "cliptrase":
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    """module -> package modules it imports (names that are not modules resolve to their module)."""
    files = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = _imports(tree, module, path.name == "__init__.py")
        graph[module] = {t for t in targets if t in files and t != module}
    return graph


def _covers(entry: str, module: str) -> bool:
    """Whether ``module`` is the table entry ``entry`` or, for a sub-package entry, one of its modules (the
    root package ``cliptrase`` stands for its ``__init__`` only)."""
    is_subpackage = entry != PACKAGE.name and (PACKAGE.parent / entry.replace(".", "/")).is_dir()
    return module == entry or (is_subpackage and module.startswith(entry + "."))


def _layer(module: str) -> int:
    best, rank = -1, -1
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if _covers(entry, module) and len(entry) > best:
                best, rank = len(entry), index
    if rank < 0:
        raise AssertionError(f"{module} is in no layer of LAYERS; add it to the table")
    return rank


GRAPH = _graph()


def test_every_module_has_a_layer() -> None:
    for module in GRAPH:
        _layer(module)


def test_every_layer_entry_exists() -> None:
    """A moved or renamed module is moved in the table too (the table stays the map)."""
    stale = [entry for _, entries in LAYERS for entry in entries if entry not in GRAPH]
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


def test_no_import_cycle() -> None:
    """Tarjan's strongly connected components: any component of more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(GRAPH[node]):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            connect(node)
    assert not cycles, "import cycles between modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def _against_layers() -> list[str]:
    wrong = []
    for importer, targets in sorted(GRAPH.items()):
        for target in sorted(targets):
            if (importer, target) in KNOWN_EXCEPTIONS:
                continue
            to_cli = _layer(target) == len(LAYERS) - 1 and _layer(importer) != len(LAYERS) - 1
            if _layer(target) > _layer(importer) or to_cli:
                low, high = LAYERS[_layer(importer)][0], LAYERS[_layer(target)][0]
                wrong.append(f"{importer} ({low}) imports {target} ({high})")
    return wrong


def test_no_import_against_the_layers() -> None:
    wrong = _against_layers()
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_only_the_shims_import_cli() -> None:
    cli = LAYERS[-1][1][0]
    importers = {
        m for m, targets in GRAPH.items() if any(t == cli or t.startswith(cli + ".") for t in targets)
    }
    outside = {m for m in importers if not (m == cli or m.startswith(cli + ".")) and m not in CLI_SHIMS}
    assert not outside, f"modules outside cli/ that import it: {sorted(outside)}"


def test_known_exceptions_are_still_needed() -> None:
    stale = [pair for pair in KNOWN_EXCEPTIONS if pair[1] not in GRAPH.get(pair[0], set())]
    assert not stale, f"known exceptions no longer in the source, remove them: {stale}"


def test_no_two_library_modules_share_a_file_name() -> None:
    names: dict[str, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" or relative.startswith(tuple(f"{m}/" for m in MIRRORED)):
            continue
        names[path.name].append(relative)
    shared = {name: paths for name, paths in names.items() if len(paths) > 1}
    unexpected = {name: paths for name, paths in shared.items() if name not in KNOWN_SHARED_NAMES}
    assert not unexpected, f"file names used twice in the library: {unexpected}"
    stale = sorted(set(KNOWN_SHARED_NAMES) - set(shared))
    assert not stale, f"no longer shared, remove from KNOWN_SHARED_NAMES: {stale}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from cliptrase.a import b\n", {"cliptrase.a", "cliptrase.a.b"}),
        ("def f():\n    import cliptrase.c\n", {"cliptrase.c"}),
        ("if TYPE_CHECKING:\n    from cliptrase.d import e\n", set()),
        ("from . import sibling\n", {"cliptrase.pkg", "cliptrase.pkg.sibling"}),
    ],
)
def test_import_reader(source: str, expected: set[str]) -> None:
    assert _imports(ast.parse(source), "cliptrase.pkg.mod", False) == expected


def test_layer_table_has_no_duplicate_prefix() -> None:
    prefixes = Counter(p for _, group in LAYERS for p in group)
    assert all(n == 1 for n in prefixes.values()), prefixes
