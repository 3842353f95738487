"""The package's imports only go down the layers (README, "Repository layout"): a module never imports from a
layer below its own, so the robot model, the executor and the simulator stay usable without ROS."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "codi_ros"
# shared foundations any layer may use (they import only each other)
FOUNDATION = {"config", "frames", "paths", "version", "bounds", "completion"}
# top to bottom: a layer may import the foundation, itself and the layers listed before it
LAYERS = ["core", "robot", "control", "sim", "data", "training", "evaluation", "perception", "ros", "nodes", "cli"]


def _imported_subpackages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found |= {n.split(".")[1] for n in names if n.startswith("codi_ros.")}
    return found


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_module_belongs_to_a_layer():
    unknown = {_layer(p) for p in PACKAGE.rglob("*.py")} - FOUNDATION - set(LAYERS) - {"__init__"}
    assert not unknown, f"modules outside the layer list: {sorted(unknown)}"


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_the_layers_above_it(layer):
    allowed = FOUNDATION | set(LAYERS[: LAYERS.index(layer) + 1])
    bad = {str(p.relative_to(PACKAGE)): sorted(_imported_subpackages(p) - allowed)
           for p in PACKAGE.rglob("*.py") if _layer(p) == layer}
    assert not {k: v for k, v in bad.items() if v}


def test_the_foundation_imports_no_layer():
    bad = {p.name: sorted(_imported_subpackages(p) - FOUNDATION) for p in PACKAGE.glob("*.py")
           if p.stem in FOUNDATION}
    assert not {k: v for k, v in bad.items() if v}
