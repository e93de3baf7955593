"""The layers import one way (see ARCHITECTURE.md): core <- SDK; core <- outputs <- coordinator |
agent <- commands, all under the one `framefleet` package. Every import counts, including those
inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "framefleet"

# Heavy server-side libraries the SDK must never need.
SERVER_LIBRARIES = {"playwright", "av", "asyncpg", "aiosqlite", "aiobotocore", "botocore"}
SDK_PROPER = {"framefleet.client", "framefleet.cli", "framefleet.videoflow"}
COORDINATOR, AGENT, OUTPUTS, COMMANDS = (
    f"framefleet.{name}" for name in ("coordinator", "agent", "outputs", "commands")
)
FARM = {COORDINATOR, AGENT, OUTPUTS, COMMANDS}
# The SDK's own modules: the package's top-level files, core/ and v1/.
SDK_FILES = [*PKG.glob("*.py"), *(PKG / "core").rglob("*.py"), *(PKG / "v1").rglob("*.py")]

# layer -> (its files, module prefixes it may not import)
RULES: dict[str, tuple[list[Path], set[str]]] = {
    "core": (
        [*(PKG / "core").rglob("*.py"), *(PKG / "v1").rglob("*.py")],
        {*FARM, *SDK_PROPER, *SERVER_LIBRARIES},
    ),
    "sdk": (SDK_FILES, {*FARM, *SERVER_LIBRARIES}),
    "outputs": (list((PKG / "outputs").rglob("*.py")), {COORDINATOR, AGENT, COMMANDS}),
    "coordinator": (list((PKG / "coordinator").rglob("*.py")), {AGENT, COMMANDS, *SDK_PROPER}),
    "agent": (list((PKG / "agent").rglob("*.py")), {COORDINATOR, COMMANDS, *SDK_PROPER}),
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
    bad.write_text("def f():\n    from framefleet.agent.render import render\n")
    assert any(forbidden(m, {AGENT}) for m in imported_modules(bad))
