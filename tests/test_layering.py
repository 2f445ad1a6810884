"""The architecture's two rules that a reader cannot check by eye across the whole package:

- what a task or method does is said by the Task / Method contract, so no code outside tasks/
  and methods/ switches on a task or method name (`cfg.task == "qa"`, `task.name in (...)`,
  a table keyed by task name);
- layers only look down: nothing that runs before or after training (inference, serving,
  export, tasks, methods, data, evaluation) imports from training/.

Both are checked on the syntax tree, so comments, docstrings and help texts that mention a task
are fine; every violation is listed with file:line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lmtune"
# Task and method names as the config spells them ("full" is left out: too common a word).
NAMES = {"classification", "ner", "qa", "generation", "prompted", "mlm", "clm",
         "lora", "adalora", "ia3", "prefix", "prompt", "freeze", "few-shot"}
OWNERS = ("tasks", "methods")  # where task and method names belong
# Expressions that name the task or method of a run: cfg.task, predictor.task.name, cfg.method.name...
SUBJECT = re.compile(r"(^|\.)(task(\.name)?|method\.name)$")
# Packages and modules that must not import from training/ (it looks down on them, not up).
BELOW_TRAINING = ("config.py", "models.py", "run.py", "forward.py", "data", "tasks", "methods",
                  "evaluation", "inference", "serving", "export")


def _names_in(node: ast.AST) -> list[str]:
    """The task/method names a comparison operand spells: a string, or strings in a tuple/list/set."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in NAMES]


def switches(source: str, where: str) -> list[str]:
    """Task/method-name switches in `source`: comparisons on a run's task or method, and task or
    method names used as comparison operands, `in` tests, dict keys or match cases."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                text = ast.unparse(operand)
                if SUBJECT.search(text):
                    found.append(f"{where}:{node.lineno}: compares {text} ({ast.unparse(node)})")
                for name in _names_in(operand):
                    found.append(f"{where}:{node.lineno}: {name!r} in a comparison ({ast.unparse(node)})")
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                for name in _names_in(key) if key is not None else []:
                    found.append(f"{where}:{key.lineno}: {name!r} as a dict key")
        elif isinstance(node, ast.MatchValue):
            for name in _names_in(node.value):
                found.append(f"{where}:{node.lineno}: {name!r} as a match case")
    return found


def training_imports(source: str, module: str, where: str) -> list[str]:
    """Imports of lmtune.training from `source` (the module's dotted name resolves relative ones)."""
    found = []
    package = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for target in targets:
            if target == "lmtune.training" or target.startswith("lmtune.training."):
                found.append(f"{where}:{node.lineno}: imports {target}")
    return found


def _by_place(violation: str) -> tuple[str, int]:
    path, line, _ = violation.split(":", 2)
    return path, int(line)


def _modules() -> list[tuple[Path, str]]:
    """(file, dotted module name) for every module of the package."""
    return [(path, ".".join(("lmtune", *path.relative_to(PACKAGE).with_suffix("").parts)))
            for path in sorted(PACKAGE.rglob("*.py"))]


def test_no_task_or_method_switches_outside_tasks_and_methods():
    found = []
    for path, _ in _modules():
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] not in OWNERS:
            found += switches(path.read_text(), f"src/lmtune/{relative}")
    assert not found, "task/method switches outside tasks/ and methods/ (make them Task or Method " \
                      "attributes):\n" + "\n".join(sorted(found, key=_by_place))


def test_nothing_below_training_imports_from_it():
    found = []
    for path, module in _modules():
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in BELOW_TRAINING:
            found += training_imports(path.read_text(), module, f"src/lmtune/{relative}")
    assert not found, "imports that reach up into training/:\n" + "\n".join(found)


def test_the_checks_find_what_they_look_for():
    """The rules above pass only because the code is clean, not because they see nothing."""
    code = '''
"""Serves qa and ner models."""  # a docstring naming tasks: fine
HELP = "classification | ner | qa"  # help text: fine
if cfg.task == "qa": pass
if predictor.task.name != other: pass
if kind in ("ner", "qa"): pass
if cfg.method.name not in allowed: pass
OUTPUTS = {"qa": ["start_logits"]}
match name:
    case "lora": pass
'''
    found = switches(code, "x.py")
    lines = sorted({int(f.split(":")[1]) for f in found})
    assert lines == [4, 5, 6, 7, 8, 10], found
    assert "x.py:4: compares cfg.task" in found[0] and any("'qa' in a comparison" in f for f in found)
    assert switches("text = cfg.task\nparser.add_argument('--task', help='qa or ner')\n", "y.py") == []

    imports = ("from ..training.loop import batched_logits\nfrom .. import training\n"
               "import lmtune.training.batching\nfrom ..tasks import get_task\nfrom . import onnx_backend\n")
    found = training_imports(imports, "lmtune.inference.predictor", "p.py")
    assert found == ["p.py:1: imports lmtune.training.loop", "p.py:2: imports lmtune.training",
                     "p.py:3: imports lmtune.training.batching"]


def test_every_registered_task_and_method_name_is_looked_for():
    """A task or method added later is guarded too ("full" is left out on purpose: too common)."""
    from lmtune.methods import METHODS
    from lmtune.tasks import TASKS, UNTRAINED_TASKS

    assert set(TASKS) | set(UNTRAINED_TASKS) | (set(METHODS) - {"full"}) <= NAMES


def test_training_names_no_task_or_method_and_reads_at_a_glance():
    """training/ is shared by every task and method: it never names one (not even in a comment),
    and no function there is longer than a screen (~60 lines)."""
    words = re.compile(r"\b(" + "|".join(sorted(NAMES - {"prompt"})) + r"|prompt tuning|packing|virtual)\b",
                       re.IGNORECASE)
    found = []
    for path in sorted((PACKAGE / "training").glob("*.py")):
        source = path.read_text()
        for number, line in enumerate(source.splitlines(), start=1):
            if words.search(line):
                found.append(f"{path.name}:{number}: {line.strip()}")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                found.append(f"{path.name}:{node.lineno}: {node.name} has {node.end_lineno - node.lineno + 1} lines")
    assert not found, "\n".join(found)
