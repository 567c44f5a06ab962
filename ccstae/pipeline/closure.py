"""The project's own code a stage runs, found from its imports (cache keys, ccstae/pipeline/stages.py).

A stage names the modules it runs (`ccstae.model.train`); the key covers the source of every
ccstae module those import, directly or through others, function-local imports included.
Computed, not listed: a moved or renamed module changes the key and never drops out of it.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "ccstae"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # .../ccstae


def module_file(name: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """ccstae.a.b -> ccstae/a/b.py or ccstae/a/b/__init__.py (None: not a module of ours)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _imports(path: Path, name: str, package_dir: Path) -> set[str]:
    """The ccstae modules `path` imports anywhere in its body (`from ccstae.x import y` may name a
    module y or a function of x: both are tried)."""
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    # a module's parents run their __init__ when it is imported
    with_parents = set()
    for m in found:
        parts = m.split(".")
        with_parents |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in with_parents if module_file(m, package_dir) is not None}


def closure(modules: tuple[str, ...], package_dir: Path = PACKAGE_DIR) -> tuple[Path, ...]:
    """Every source file of ccstae that importing `modules` can run, sorted."""
    seen, todo = {}, [m for m in modules]
    for m in modules:
        if module_file(m, package_dir) is None:
            raise ValueError(f"{m} is not a module of {package_dir}")
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        path = module_file(m, package_dir)
        seen[m] = path
        todo += sorted(_imports(path, m, package_dir) - seen.keys())
    return tuple(sorted(set(seen.values())))
