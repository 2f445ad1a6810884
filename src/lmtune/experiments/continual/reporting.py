"""The continual run's report: the accuracy matrices with their transfer figures, the cost, the
routing accuracy of adapter-per-task; as report.json, report.md (also the folder's README) and
a heatmap."""

from __future__ import annotations

import json
from typing import Any

from .report import format_matrix, heatmap, transfer_metrics


def write_report(job: Any, quiet: bool = False) -> dict[str, Any]:
    names = [s.name for s in job.steps]
    report: dict[str, Any] = {"strategy": job.base.continual.strategy, "heads": job.heads.mode, "steps": names,
                              "matrix": job.state["matrix"], "baseline": job.state.get("baseline")}
    for split, matrix in job.state["matrix"].items():
        if not matrix or any(v is None for v in matrix[-1]):
            continue
        if job.multitask:
            report[split] = {"average_accuracy": sum(matrix[0]) / len(matrix[0])}
        else:
            baseline = (job.state.get("baseline") or {}).get(split)
            report[split] = transfer_metrics(matrix, baseline)
    entries = job.state["steps"]
    report["seconds"] = sum(e.get("seconds", 0.0) + e.get("strategy_seconds", 0.0) for e in entries)
    report["peak_rss_mb"] = max((e.get("peak_rss_mb", 0.0) for e in entries), default=0.0)
    report["stored"] = job.strategy.stored(len(entries))
    if not job.strategy.shared_model:
        report["routing"] = routing_report(job)
    (job.root / "report.json").write_text(json.dumps(report, indent=1))
    text = _markdown(job, report, names)
    (job.root / "report.md").write_text(text)
    (job.root / "README.md").write_text(text)
    if not job.multitask and "test" in report:
        heatmap(job.state["matrix"]["test"], names, job.root / "matrix.png",
                f"{report['strategy']}: test accuracy after each step")
    if not quiet:
        print(text, flush=True)
    return report


def _markdown(job: Any, report: dict[str, Any], names: list[str]) -> str:
    lines = [f"# Continual run: {report['strategy']}", "",
             f"Steps: {', '.join(names)} ({report['heads']} head{'s' if report['heads'] != 'shared' else ''}); "
             f"training {report['seconds']:.0f} s (with the strategy's own work between steps), peak memory {report['peak_rss_mb']:.0f} MB; "
             f"stored between steps: {report['stored']}.", ""]
    for split in ("test", "validation"):
        matrix = job.state["matrix"].get(split)
        if not matrix or split not in report:
            continue
        if job.multitask:
            row = " | ".join(f"{v:.4f}" for v in matrix[0])
            lines += [f"## {split}", "", "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
                      f"| all steps at once | {row} |", "",
                      f"average accuracy {report[split]['average_accuracy']:.4f}", ""]
        else:
            baseline = (report.get("baseline") or {}).get(split)
            lines += [f"## {split}", "", format_matrix(matrix, names, baseline=baseline), ""]
    routing = report.get("routing")
    if routing:
        lines += [f"Routing (task not given): {routing['accuracy']:.4f} of test inputs reach their own "
                  f"step's adapter; accuracy when routed {routing['routed_accuracy']:.4f}.", ""]
    return "\n".join(lines)


def routing_report(job: Any) -> dict[str, Any] | None:
    """adapter-per-task: how often the nearest task centroid picks an input's own step, and the
    accuracy when every test input is answered by the adapter it is routed to."""
    from ...inference.predictor import load
    from .routing import Embedder

    router = job.strategy.router(len(job.steps))
    if router is None:
        return None
    embed = Embedder(job.base.model.name)
    texts = {s.name: job.records(s, "test") for s in job.steps}
    embedded = {name: embed([str(r.fields["text"]) for r in records]) for name, records in texts.items() if records}
    result = router.accuracy(embedded)
    right = total = 0
    predictors = {s.name: load(job.run_dir(i)) for i, s in enumerate(job.steps)}
    for name, records in texts.items():
        routes = router.route(embedded[name]) if records else []
        for target in set(routes):
            chosen = [r for r, route in zip(records, routes) if route == target]
            predictions = predictors[target].predict([str(r.fields["text"]) for r in chosen])
            right += sum(p["label"] == str(r.fields["label"]) for p, r in zip(predictions, chosen))
        total += len(records)
    result["routed_accuracy"] = right / total if total else None
    return result
