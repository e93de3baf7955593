"""The layers import one way (see ARCHITECTURE.md): core <- SDK; core <- outputs <- coordinator |
agent <- farm. Every import counts, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "clients" / "python" / "framefleet"

# Heavy server-side libraries the SDK must never need.
SERVER_LIBRARIES = {"playwright", "av", "asyncpg", "aiosqlite", "aiobotocore", "botocore"}
SDK_PROPER = {"framefleet.client", "framefleet.cli", "framefleet.videoflow"}

# layer -> (its files, module prefixes it may not import)
RULES: dict[str, tuple[list[Path], set[str]]] = {
    "core": (
        [*(SDK / "core").rglob("*.py"), *(SDK / "v1").rglob("*.py")],
        {"coordinator", "agent", "outputs", "farm", *SDK_PROPER, *SERVER_LIBRARIES},
    ),
    "sdk": (
        [p for p in SDK.rglob("*.py")],
        {"coordinator", "agent", "outputs", "farm", *SERVER_LIBRARIES},
    ),
    "outputs": (list((ROOT / "outputs").rglob("*.py")), {"coordinator", "agent", "farm"}),
    "coordinator": (
        list((ROOT / "coordinator").rglob("*.py")),
        {"agent", "farm", *SDK_PROPER},
    ),
    "agent": (list((ROOT / "agent").rglob("*.py")), {"coordinator", "farm", *SDK_PROPER}),
}


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def forbidden(module: str, banned: set[str]) -> bool:
    return any(module == b or module.startswith(b + ".") for b in banned)


@pytest.mark.parametrize("layer", sorted(RULES))
def test_imports_point_down(layer: str) -> None:
    files, banned = RULES[layer]
    assert files, f"no files found for layer {layer}"
    breaches = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        for module in sorted(imported_modules(path))
        if forbidden(module, banned)
    ]
    assert not breaches, "\n".join(breaches)


def test_the_checker_sees_a_breach(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from agent.render import render\n")
    assert any(forbidden(m, {"agent"}) for m in imported_modules(bad))
