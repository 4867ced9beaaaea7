"""Writes docs/api.md, the API reference, from the typed stub of the native module and the
package's Python modules, so the reference cannot drift from what mypy and stubtest check.

    python scripts/api_reference.py          # rewrite docs/api.md
    python scripts/api_reference.py --check  # fail if docs/api.md is out of date (CI)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "api.md"
SOURCES = [
    ("boxlite (the native runtime: `boxlite._native`, re-exported by `boxlite`)", ROOT / "stubs" / "boxlite" / "_native.pyi"),
    ("boxlite.simplebox, boxlite.codebox, boxlite.interactivebox, boxlite.exec", ROOT / "python" / "boxlite" / "simplebox.py"),
    (None, ROOT / "python" / "boxlite" / "codebox.py"),
    (None, ROOT / "python" / "boxlite" / "interactivebox.py"),
    (None, ROOT / "python" / "boxlite" / "exec.py"),
    ("boxlite.browserbox, boxlite.computerbox, boxlite.skillbox (the specialised boxes)", ROOT / "python" / "boxlite" / "browserbox.py"),
    (None, ROOT / "python" / "boxlite" / "computerbox.py"),
    (None, ROOT / "python" / "boxlite" / "skillbox.py"),
    ("boxlite.sync_api", ROOT / "python" / "boxlite" / "sync_api" / "__init__.py"),
    (None, ROOT / "python" / "boxlite" / "sync_api" / "_execution.py"),
    (None, ROOT / "python" / "boxlite" / "sync_api" / "_network.py"),
    (None, ROOT / "python" / "boxlite" / "_network.py"),
    ("boxlite.rest (settings of a REST-backed runtime)", ROOT / "python" / "boxlite" / "rest.py"),
    ("boxlite.ray (a runtime over a Ray cluster: `Boxlite.ray`)", ROOT / "python" / "boxlite" / "ray_options.py"),
    (None, ROOT / "python" / "boxlite" / "ray" / "_client.py"),
    (None, ROOT / "python" / "boxlite" / "ray" / "_execution.py"),
    (None, ROOT / "python" / "boxlite" / "ray" / "_wire.py"),
    ("boxlite.errors", ROOT / "python" / "boxlite" / "errors.py"),
]


def public(name: str) -> bool:
    return not name.startswith("_") or name in ("__aenter__", "__aexit__", "__enter__", "__exit__", "__aiter__", "__anext__", "__iter__", "__next__", "__new__", "__init__")


def signature(function: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    arguments = ast.unparse(function.args)
    for prefix in ("self, ", "cls, ", "self", "cls"):
        if arguments.startswith(prefix):
            arguments = arguments[len(prefix):]
            break
    returns = f" -> {ast.unparse(function.returns)}" if function.returns else ""
    asynchronous = "async " if isinstance(function, ast.AsyncFunctionDef) else ""
    return f"{asynchronous}{function.name}({arguments}){returns}"


def doc(node: ast.AST) -> str:
    text = ast.get_docstring(node) if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)) else None
    return " ".join(text.split()) if text else ""


def decorators(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    return {ast.unparse(decorator) for decorator in function.decorator_list}


def describe_class(node: ast.ClassDef, private_bases: dict[str, ast.ClassDef]) -> list[str]:
    """The class's members, with those it inherits from private classes of its module."""
    bases = ", ".join(ast.unparse(base) for base in node.bases if not ast.unparse(base).startswith("_"))
    lines = [f"### `{node.name}`" + (f" ({bases})" if bases else ""), ""]
    if doc(node):
        lines += [doc(node), ""]
    seen_properties: set[str] = set()
    inherited = [member for base in node.bases if ast.unparse(base) in private_bases for member in private_bases[ast.unparse(base)].body]
    for member in [*node.body, *inherited]:
        if isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name) and public(member.target.id):
            lines.append(f"- `{member.target.id}: {ast.unparse(member.annotation)}`")
        elif isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and public(member.name):
            marks = decorators(member)
            if any(mark.endswith(".setter") for mark in marks):
                continue
            if "property" in marks:
                if member.name in seen_properties:
                    continue
                seen_properties.add(member.name)
                returns = ast.unparse(member.returns) if member.returns else "..."
                entry = f"- `{member.name}: {returns}` (property)"
            else:
                kind = " (static)" if "staticmethod" in marks else ""
                entry = f"- `{signature(member)}`{kind}"
            lines.append(entry + (f" — {doc(member)}" if doc(member) else ""))
    return lines + [""]


def exported(tree: ast.Module) -> set[str] | None:
    """The names a module's ``__all__`` lists (its public API), or None without one."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets):
            return {element.value for element in ast.walk(node.value) if isinstance(element, ast.Constant) and isinstance(element.value, str)}
    return None


def render() -> str:
    lines = [
        "# API reference",
        "",
        "Generated by `scripts/api_reference.py` from `stubs/boxlite/_native.pyi` (the native module, checked",
        "against the built extension by stubtest) and the package's Python modules. Async methods of native",
        "classes return awaitables (`asyncio.Future`). How to use them well: `docs/guide.md`; how they differ",
        "from BoxLite's: `docs/differences.md`.",
        "",
    ]
    for title, path in SOURCES:
        tree = ast.parse(path.read_text())
        if title:
            lines += [f"## {title}", ""]
        private_bases = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef) and not public(node.name)}
        listed = exported(tree)
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and listed is not None and node.name not in listed:
                continue
            if isinstance(node, ast.ClassDef) and public(node.name):
                lines += describe_class(node, private_bases)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and public(node.name):
                lines += [f"### `{signature(node)}`", "", doc(node), ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print("docs/api.md is out of date: run python scripts/api_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
