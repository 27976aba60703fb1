"""The layering of docs/architecture.md: what each part of the code may import from the others.

Every import statement counts, the ones inside functions too. A new package or top-level module
of ``macpo`` fails here until it has a row in ``LAYERS`` (and a line in docs/architecture.md).
"""

from __future__ import annotations

import ast

import pytest

from tests.helpers import REPO

LIBRARY_BELOW_RUNS = ("macpo.config", "macpo.memory", "macpo.envs", "macpo.nn", "macpo.replay", "macpo.rollout",
                      "macpo.algos")  # fmt: skip
#: part of the code → what it may import besides itself (a module or package and what is inside it)
LAYERS: dict[str, tuple[str, ...]] = {
    "macpo.config": (),
    "macpo.memory": (),
    "macpo.envs": (),
    "macpo.nn": (),
    "macpo.rollout": ("macpo.envs",),
    "macpo.replay": ("macpo.envs", "macpo.memory"),
    "macpo.algos": ("macpo.envs", "macpo.nn", "macpo.replay", "macpo.rollout"),
    "macpo.runs": LIBRARY_BELOW_RUNS,
    "macpo.train": ("macpo.config", "macpo.runs", "macpo.algos"),
    "macpo.tools": ("macpo",),
    "analysis": ("macpo.runs.tracking",),
}


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str | None:
    return next((p for p in LAYERS if module == p or module.startswith(p + ".")), None)


def imported(path, module: str) -> set[str]:
    """Every macpo / analysis module that ``path`` imports (``from macpo import x`` counts as ``macpo.x``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package
                package = module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")
                base = ".".join([*package, *([base] if base else [])])
            out |= {f"{base}.{a.name}" for a in node.names} if base in ("macpo", "analysis") else {base}
    return {m for m in out if m.split(".")[0] in ("macpo", "analysis")}


def sources():
    for root in ("macpo", "analysis"):
        yield from sorted(p for p in (REPO / root).rglob("*.py") if "conf" not in p.relative_to(REPO).parts)


@pytest.mark.parametrize("path", list(sources()), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_follow_the_layers(path):
    module = module_name(path)
    if module in ("macpo", "analysis"):
        return  # the packages' own __init__
    part = part_of(module)
    assert part is not None, f"{module} is in no layer: add it to LAYERS here and to docs/architecture.md"
    allowed = (part, *LAYERS[part])
    wrong = sorted(m for m in imported(path, module) if not any(m == a or m.startswith(a + ".") for a in allowed))
    assert not wrong, f"{module} ({part}) imports {wrong}; {part} may import {LAYERS[part] or 'nothing'}"
