"""The layout's rules, checked on the tree: no module of the packages over 700 lines, and
no import cycle inside `node/` (imports run when a module loads; the ones under
`if TYPE_CHECKING:` and inside functions do not count)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("crdt", "dht", "node", "tui", "rumor_runtime")
MOST_LINES = 700


def _modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package`."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _load_time_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `name` imports when it loads."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        base = package.split(".")
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    visit(node.orelse)
                    continue
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name in known)
            elif isinstance(node, ast.ImportFrom):
                target = resolve(node.module, node.level)
                for alias in node.names:  # `from . import x`: x may be a module
                    if f"{target}.{alias.name}" in known:
                        found.add(f"{target}.{alias.name}")
                if target in known:
                    found.add(target)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    # Loading a module loads the packages above it first, but not ours: they are loading.
    ours = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    for module in list(found):
        parts = module.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return {module for module in found if module in known and module not in ours}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                return [*path[path.index(imported) :], imported]
            if imported not in state:
                cycle = walk(imported)
                if cycle:
                    return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = walk(module)
            if cycle:
                return cycle
    return None


def test_no_module_is_over_700_lines() -> None:
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for package in PACKAGES
        for name, path in _modules(package).items()
    }
    assert len(sizes) > 50  # the walk found the packages
    assert {name: n for name, n in sizes.items() if n > MOST_LINES} == {}


def test_no_import_cycle_inside_node() -> None:
    modules = _modules("node")
    known = set(modules)
    graph = {name: _load_time_imports(name, path, known) for name, path in modules.items()}
    # The walk sees real edges: the facade loads the room driver, which loads gossip.
    assert "node._room_driver" in graph["node._node"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
