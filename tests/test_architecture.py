"""The package's layering, as docs/architecture.md draws it, checked on the source.

Every ``import`` of a handgrad module (at a module's top or inside a function) must go down
the layers, never up or sideways; inside ``handgrad.train`` the modules are ordered too. And
autograd (``torch.autograd``, ``torch.enable_grad``, ``requires_grad_()``, ``.backward()`` on
a tensor, ``torch.func``) appears only in the modules that document allows.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "handgrad"

# Part of handgrad -> the parts it may import (docs/architecture.md, "Layers").
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "limits": {"errors"},
    "data": {"errors", "limits"},
    "nn": {"errors"},
    "optim": {"errors", "limits", "nn"},
    "reference": {"errors", "limits", "nn"},
    "check": {"errors", "limits", "nn", "optim", "reference", "data"},
    "distributed": {"errors", "limits", "nn", "optim"},
    "train": {"errors", "limits", "data", "nn", "optim", "reference", "distributed"},
    "export": {"errors", "limits", "nn", "reference", "train"},
    "sklearn": {"errors", "limits", "data", "nn", "optim", "reference", "train", "export"},
    "notebook": {"errors", "limits", "data", "nn", "optim", "reference", "check", "train"},
    "cli": {
        "errors",
        "limits",
        "data",
        "nn",
        "optim",
        "reference",
        "check",
        "distributed",
        "train",
        "export",
        "sklearn",
    },
    "__init__": {"errors"},
    "__main__": {"cli"},
}
# Inside handgrad.train, lowest first: a module imports only modules before it.
TRAIN_ORDER = [
    "records",
    "lock",
    "checks",
    "resume",
    "config",
    "tabular",
    "recipes",
    "steps",
    "metrics",
    "build",
    "plots",
    "engines",
    "stopping",
    "checkpoints",
    "evaluation",
    "layer_stats",
    "lr_finder",
    "doctor",
    "report_page",
    "threads",
    "distributed_run",
    "loop",
    "run_text",
    "compare",
    "session",
]
# The only modules that may use autograd: the torch.nn twin, the autograd engine, and the
# reference of the learner-code checker.
AUTOGRAD_ALLOWED = {"handgrad.reference", "handgrad.train.engines", "handgrad.check.learner"}
AUTOGRAD_PREFIXES = ("handgrad.check.learner_",)


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1 and parts[-2] != "handgrad":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def part_of(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` of every handgrad module the tree imports."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("handgrad")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name == "handgrad":  # from handgrad import nn (or __version__)
                for a in node.names:
                    is_module = (SRC / a.name).is_dir() or (SRC / f"{a.name}.py").exists()
                    out.append((node.lineno, f"handgrad.{a.name}" if is_module else name))
            elif name.startswith("handgrad."):
                out.append((node.lineno, name))
    return out


def layering_violations() -> list[str]:
    bad = []
    for module, path in modules():
        part = part_of(module)
        if part not in MAY_IMPORT:
            bad.append(f"{module}: handgrad.{part} is not in docs/architecture.md's layers")
            continue
        tree = ast.parse(path.read_text(), str(path))
        for line, target in imported(tree, module, path.name == "__init__.py"):
            other = part_of(target)
            if other == part:
                if part == "train" and "." in module[len("handgrad.train") :]:
                    mine = module.split(".")[2]
                    theirs = target.split(".")[2] if target.count(".") >= 2 else None
                    if theirs is not None and (
                        theirs not in TRAIN_ORDER
                        or mine not in TRAIN_ORDER
                        or TRAIN_ORDER.index(theirs) >= TRAIN_ORDER.index(mine)
                    ):
                        bad.append(f"{path}:{line}: train.{mine} imports train.{theirs}")
                continue
            if other != "__init__" and other not in MAY_IMPORT[part]:
                bad.append(f"{path}:{line}: handgrad.{part} imports {target}")
    return bad


def test_no_module_imports_from_a_layer_above_it() -> None:
    assert layering_violations() == []


def autograd_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """Where the tree uses autograd."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("autograd", "enable_grad", "func"):
            if isinstance(node.value, ast.Name) and node.value.id == "torch":
                found.append((node.lineno, f"torch.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module.startswith(("torch.autograd", "torch.func")) or (
                node.module == "torch" and names & {"autograd", "enable_grad", "func"}
            ):
                found.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr = node.func.attr
            if attr == "requires_grad_" and not (
                node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value is False
            ):
                found.append((node.lineno, "requires_grad_()"))
            if attr == "backward" and not node.args and not node.keywords:
                # A handgrad loss's backward() takes no argument either; those are named loss.
                receiver = node.func.value
                name = receiver.attr if isinstance(receiver, ast.Attribute) else None
                name = receiver.id if isinstance(receiver, ast.Name) else name
                if name is None or not (name == "loss" or name.endswith(("_loss", "loss_fn"))):
                    found.append((node.lineno, f"{name}.backward()"))
    return found


def test_autograd_is_used_only_where_the_architecture_allows() -> None:
    bad = []
    for module, path in modules():
        if module in AUTOGRAD_ALLOWED or module.startswith(AUTOGRAD_PREFIXES):
            continue
        for line, what in autograd_uses(ast.parse(path.read_text(), str(path))):
            bad.append(f"{path}:{line}: {what}")
    assert bad == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import torch\nwith torch.enable_grad():\n    pass\n", "torch.enable_grad"),
        ("from torch.autograd import grad\n", "from torch.autograd import ..."),
        ("x.requires_grad_()\n", "requires_grad_()"),
        ("value = f(x)\nvalue.backward()\n", "value.backward()"),
        ("import torch\ntorch.autograd.grad(y, [x])\n", "torch.autograd"),
    ],
)
def test_the_autograd_detector_finds_each_way_in(source: str, expected: str) -> None:
    assert expected in [what for _, what in autograd_uses(ast.parse(source))]


def test_the_autograd_detector_lets_handgrad_calls_pass() -> None:
    source = "model.backward(loss.backward())\nt.requires_grad_(False)\nself.loss.backward()\n"
    assert autograd_uses(ast.parse(source)) == []


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    tree = ast.parse("from handgrad.train.loop import train\nfrom handgrad import check\n")
    targets = [t for _, t in imported(tree, "handgrad.nn.linear", False)]
    assert targets == ["handgrad.train.loop", "handgrad.check"]
    assert all(part_of(t) not in MAY_IMPORT["nn"] for t in targets)


@pytest.mark.parametrize(
    "module",
    [
        "handgrad.cli.main",
        "handgrad.cli.train_cmd",
        "handgrad.cli.recipes_cmd",
        "handgrad.cli.options",
        "handgrad.cli.check_cmd",
        "handgrad.cli.data_cmd",
        "handgrad.train.config",
        "handgrad.train.recipes",
    ],
)
def test_the_command_line_front_imports_no_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_help_and_recipes_answer_without_torch() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from handgrad.cli.main import main\n"
        "for argv in (['--help'], ['train', '--help'], ['train', '--lrr', '1'], ['recipes'],\n"
        "             ['check', '--help'], ['check', '--modle', '8-4'], ['data', '--help'],\n"
        "             ['data', 'show', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), "
        "contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_train_order_is_the_one_the_page_draws() -> None:
    page = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    table = page.split("Inside `train`", 1)[1].split("\n\n", 2)[1]
    drawn = [line.split("`")[1] for line in table.splitlines()[2:] if line.startswith("| `")]
    assert drawn == TRAIN_ORDER
    on_disk = {p.stem for p in (SRC / "train").glob("*.py") if p.stem != "__init__"}
    assert on_disk == set(TRAIN_ORDER)
