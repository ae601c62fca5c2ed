"""The house plan holds: each room imports only rooms below it (docs/architecture.md), no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "assetlib"

# Rooms from the bottom up; a room may import its own modules and any room listed before it.
LAYERS: list[set[str]] = [
    {"vocab", "model_specs"},
    {"config"},
    {"logs", "records", "procs"},
    {"media"},
    {"library"},
    {"encoders"},
    {"embedding"},
    {"store"},
    {"search", "train"},
    {"evaluation"},
    {"pipeline"},
    {"faces"},
]
LEVEL = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "assetlib" else None


def _runtime_imports(path: Path) -> set[str]:
    """assetlib modules a file imports when it runs (imports under TYPE_CHECKING are only types)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for child in node.body for n in ast.walk(child))
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("assetlib"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("assetlib"))
    return found


def test_every_room_imports_only_rooms_below_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts)
        own = _room(module)
        if own is None or own not in LEVEL:  # assetlib/__init__, __main__
            continue
        for imported in _runtime_imports(path):
            room = _room(imported)
            if room is None or room == own:
                continue
            assert room in LEVEL, f"{imported} is in no room of the plan"
            if LEVEL[room] >= LEVEL[own]:
                wrong.append(f"{module} imports {imported}")
    assert wrong == [], "imports against the house plan (docs/architecture.md):\n" + "\n".join(wrong)


def test_every_room_on_disk_is_in_the_plan():
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if not p.name.startswith("_")}
    rooms -= {"share"}  # the dashboard's Voila template, no code
    assert rooms == set(LEVEL)
