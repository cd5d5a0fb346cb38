"""Print the size and shape figures of the `runner` package: modules, lines, import depth, parts.

    python scripts/architecture_stats.py [--root REPO] [--map LAYOUT_MAP]

- modules: every `.py` file under runner/ except package `__init__.py` files that hold no
  code (a docstring at most); lines are physical lines, as `wc -l` counts them.
- import depth: the longest chain of imports between runner modules (every import statement,
  including those inside functions and `if TYPE_CHECKING:`), counted in modules. Modules that
  import each other in a cycle count as one step, and the cycles are reported.
- parts: the first name under runner/ (a package, or a top-level module). `--map` names where
  old modules went (lines `runner.old -> runner.new`), to measure an old tree in the new parts.
"""

from __future__ import annotations

import argparse
import ast
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OVER = 400


def module_name(path: Path, root: Path) -> str:
    """The dotted module name of a file under `root` (a package is named by its folder)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def holds_code(tree: ast.Module) -> bool:
    """Whether a module has any statement besides its docstring."""
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return bool(body)


def imported(tree: ast.Module, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The runner modules one module imports (`from runner.x import y` counts runner.x.y when
    that is a module, else runner.x)."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            targets = [t for t in targets if t in known] or [base]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import runner.a.b.C` -> runner.a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's components, iteratively (each a list of nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for target in edges:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def layers(graph: Mapping[str, set[str]]) -> tuple[int, list[list[str]], dict[str, int]]:
    """(longest import chain counted in components, the cycles, depth of each node)."""
    components = strongly_connected(graph)
    owner = {node: number for number, members in enumerate(components) for node in members}
    depth: dict[int, int] = {}
    # Tarjan emits a component after every component it reaches: depths in one pass.
    for number, members in enumerate(components):
        below = [depth[owner[t]] for m in members for t in graph[m] if owner[t] != number]
        depth[number] = 1 + max(below, default=0)
    cycles = [members for members in components if len(members) > 1]
    return max(depth.values(), default=0), cycles, {n: depth[owner[n]] for n in graph}


def read_map(path: Path | None) -> dict[str, str]:
    """Old module -> new module, from a layout map (symbol lines are skipped)."""
    if path is None:
        return {}
    moved: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        old, arrow, new = (part.strip() for part in line.partition("->"))
        if arrow and ":" not in old:
            moved[old] = new
    return moved


def part_of(module: str, moved: Mapping[str, str]) -> str:
    """The part a module belongs to: the first name under runner/ of its (new) name."""
    name = moved.get(module, module)
    for old, new in moved.items():  # modules of a moved package move with it
        if module.startswith(old + ".") and module not in moved:
            name = new + module[len(old) :]
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "runner"


def part_graph(graph: Mapping[str, set[str]], moved: Mapping[str, str]) -> dict[str, set[str]]:
    """Which parts import which (self-imports left out)."""
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = part_of(module, moved)
        parts.setdefault(source, set())
        for target in targets:
            other = part_of(target, moved)
            parts.setdefault(other, set())
            if other != source:
                parts[source].add(other)
    return parts


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository (default: this one)")
    parser.add_argument("--map", type=Path, help="layout map: old module -> new module")
    args = parser.parse_args(None if argv is None else list(argv))
    root: Path = args.root
    files = sorted((root / "runner").rglob("*.py"))
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in files}
    known = {module_name(path, root) for path in files}
    graph = {
        module_name(path, root): imported(
            tree, module_name(path, root), path.name == "__init__.py", known
        )
        for path, tree in trees.items()
    }
    sizes = {
        module_name(path, root): len(path.read_text(encoding="utf-8").splitlines())
        for path, tree in trees.items()
        if path.name != "__init__.py" or holds_code(tree)
    }
    over = sorted((lines, name) for name, lines in sizes.items() if lines > OVER)
    depth, cycles, _ = layers(graph)
    print(f"modules: {len(sizes)} ({len(files)} files with docstring-only package markers)")
    print(f"module lines: median {statistics.median(sizes.values()):g}, max {max(sizes.values())}")
    print(f"modules over {OVER} lines: {len(over)}", *(f"{n} ({lines})" for lines, n in over))
    print(f"import depth (longest chain, cycles counted once): {depth} modules")
    print(f"module import cycles: {len(cycles)}", *(f"[{' '.join(c)}]" for c in cycles))
    parts = part_graph(graph, read_map(args.map))
    part_depth, part_cycles, part_layers = layers(parts)
    print(f"parts: {len(parts)}; cycles between parts: {len(part_cycles)}")
    for cycle in part_cycles:
        print(f"  cycle of {len(cycle)} parts: {' '.join(cycle)}")
    if not part_cycles:
        for level in range(1, part_depth + 1):
            names = sorted(p for p, at in part_layers.items() if at == level)
            print(f"  layer {level}: {' '.join(names)}")


if __name__ == "__main__":
    main()
