"""Predictions from a continual run folder for any step seen so far: given the step (`task=`),
or routed when it is not (the shared head's own choice, or the nearest task centroid for
adapter-per-task)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ...config import ConfigError


class ContinualPredictor:
    """`predict(texts, task=None)`; each prediction also names the step (`task`) that answered."""

    def __init__(self, root: Path, device: str | None = None):
        self.root, self.device = root, device
        self.state = json.loads((root / "continual.json").read_text())
        finished = [i for i, s in enumerate(self.state["steps"]) if s["status"] == "finished"]
        if not finished:
            raise FileNotFoundError(f"{root}: no step has finished training yet; resume it with "
                                    f"`lmtune continual --resume {root}`")
        self.runs = [root / "steps" / f"{i + 1:02d}-{self.state['steps'][i]['name']}" for i in finished]
        heads = self.state["heads"]
        self.groups, self.group_of_step = heads["groups"], heads["group_of_step"]
        self.per_step_runs = self.state["strategy"] == "adapter-per-task"
        names = [self.state["steps"][i]["name"] for i in finished]
        self.tasks = names if self.per_step_runs else [n for n in self.group_of_step
                                                        if self.state["strategy"] == "multitask" or n in names]
        self._loaded: dict[Path, Any] = {}

    def _predictor(self, run: Path) -> Any:
        from ...inference.predictor import load

        if run not in self._loaded:
            self._loaded[run] = load(run, self.device)
        return self._loaded[run]

    def predict(self, texts: Sequence[str] | str, task: str | None = None, **options: Any) -> list[dict[str, Any]]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        step = task  # the step (task or domain) the caller names
        if step is not None and step not in self.tasks:
            raise ConfigError(f"task {task!r} is not a step this run has learned; choose one of: "
                              f"{', '.join(self.tasks)}")
        if self.per_step_runs:
            return self._predict_adapters(texts, step, **options)
        predictor = self._predictor(self.runs[-1])
        if step is not None:
            labels = self.groups[self.group_of_step[step]] if len(self.groups) > 1 else None
            found = predictor.predict(texts, labels=labels, **options) if labels else predictor.predict(texts, **options)
            return [{**p, "task": step} for p in found]
        group_task = {}
        for name, group in self.group_of_step.items():
            group_task.setdefault(group, name)
        return [{**p, "task": next((group_task[g] for g, labels in enumerate(self.groups) if p["label"] in labels),
                                   None) if len(self.groups) > 1 else None}
                for p in predictor.predict(texts, **options)]

    def _predict_adapters(self, texts: list[str], step: str | None, **options: Any) -> list[dict[str, Any]]:
        by_name = dict(zip([r.name.split("-", 1)[1] for r in self.runs], self.runs))
        if step is not None:
            return [{**p, "task": step} for p in self._predictor(by_name[step]).predict(texts, **options)]
        from .routing import CentroidRouter, Embedder

        cfg = self._predictor(self.runs[0]).cfg
        router = CentroidRouter.load(sorted((self.root / "strategy").glob("router-*.npz"))[len(self.runs) - 1])
        routes = router.route(Embedder(cfg.model.name)(texts))
        out: list[dict[str, Any] | None] = [None] * len(texts)
        for target in set(routes):
            index = [i for i, r in enumerate(routes) if r == target]
            for i, p in zip(index, self._predictor(by_name[target]).predict([texts[i] for i in index], **options)):
                out[i] = {**p, "task": target}
        return out  # type: ignore[return-value]


def load_continual(root: str | Path, device: str | None = None) -> ContinualPredictor:
    return ContinualPredictor(Path(root), device)
