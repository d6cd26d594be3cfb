"""The package's layers: no module imports from a layer above its own.

Lowest first; packages on one line are siblings and do not import each other. Every import
counts, including those inside functions (they are arrows too, only later ones).
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "ur4rec"

LAYERS = [
    {"errors", "version"},
    {"io", "measures", "report_table", "provenance"},
    {"config"},
    {"data"},
    {"text"},
    {"models"},
    {"eval", "runs"},
    {"train"},
    {"serve", "report"},
    {"cli", "api"},  # api: the package's __init__, the public names (imported lazily)
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def unit(module: str) -> str:
    """'ur4rec.models.sasrec' -> 'models'; the package's own __init__ is 'api'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__init__" else "api"


def module_name(path: Path) -> str:
    return ".".join(("ur4rec", *path.relative_to(SRC).with_suffix("").parts))


def imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, imported module) for every ur4rec import in ``source``, a module of
    ``package``."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("ur4rec")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: -node.level]
                name = ".".join([*base, node.module or ""]).rstrip(".")
            else:
                name = node.module or ""
            if name.startswith("ur4rec"):
                # `from ur4rec import x` imports the submodule x when x is one.
                if name == "ur4rec":
                    found += [(node.lineno, f"ur4rec.{a.name}") for a in node.names]
                else:
                    found.append((node.lineno, name))
    return found


def test_every_module_belongs_to_a_layer() -> None:
    units = {unit(module_name(p)) for p in SRC.rglob("*.py")}
    assert units <= set(LEVEL), f"modules outside every layer: {sorted(units - set(LEVEL))}"


def test_no_import_goes_up_a_layer() -> None:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        here = unit(module_name(path))
        for line, module in imports(path.read_text(encoding="utf-8"), module_name(path)):
            there = unit(module)
            if there not in LEVEL or there == here:
                continue
            if LEVEL[there] >= LEVEL[here]:
                problems.append(
                    f"{path.relative_to(SRC)}:{line} ({here}) imports {module} ({there})"
                )
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_the_check_sees_a_forbidden_arrow() -> None:
    # Guards the test itself: a back arrow written the usual ways is found.
    source = (
        "from ur4rec.train.run import train\n"
        "import ur4rec.serve.app\n"
        "def later():\n"
        "    from .. import cli\n"
        "    from ..eval import evaluator\n"
    )
    found = [m for _, m in imports(source, "ur4rec.models.probe")]
    assert [unit(m) for m in found] == ["train", "serve", "cli", "eval"]
