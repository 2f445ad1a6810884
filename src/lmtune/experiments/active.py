"""`lmtune active`: active learning, an orchestration over ordinary runs.

Each round trains an ordinary run (`finetune`) on the rows labeled so far, scores the pool rows
nobody has labeled or been asked about with that run's Predictor, and asks for the `batch` rows
the strategy picks, as <folder>/round-NNN/to_label.csv (the pool's columns, an empty label
column and the pool row id, so rows match back however the file is reordered). Running the same
command again reads every file still pending (filled rows join the labeled set; empty ones stay
pending and are not asked again; a row deleted from the file is released) and starts the next
round. Without any labels the first batch is picked without a model: k-means over the base
model's mean-pooled embeddings, the row nearest each centroid.

`simulate` labels each batch from the pool's own gold labels for `rounds` rounds, scoring each
round's run on an evaluation file: the learning curve of a strategy (labels used -> accuracy).
State lives in <folder>/active.json; each round's run is <folder>/round-NNN/run.
"""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..config import Config, ConfigError
from ..data import read_table
from ..data.checks import is_blank
from ..data.records import DataError, DataIssue, Dataset, Record

ID_COLUMN = "pool_row"  # the pool row (1-based, in file order) a to_label.csv row is
STATE_FILE = "active.json"


# ---- strategies: (probabilities (rows, labels), k, rng) -> k row indices -------------------------
def breaking_ties(probs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The rows whose two likeliest labels are closest (smallest top-2 margin)."""
    top2 = np.sort(probs, axis=1)[:, -2:]  # (rows, 2), ascending
    return np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:k]


def entropy(probs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The rows whose predicted distribution has the highest entropy."""
    h = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(1)
    return np.argsort(-h, kind="stable")[:k]


def random_rows(probs: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k rows drawn uniformly (seeded): the baseline the others must beat."""
    return rng.choice(len(probs), size=min(k, len(probs)), replace=False)


STRATEGIES: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "breaking-ties": breaking_ties, "entropy": entropy, "random": random_rows}


def diverse_rows(embeddings: np.ndarray, k: int, seed: int = 0) -> list[int]:
    """Cold start: k distinct rows, the nearest to each of k k-means centroids (a spread of the
    pool, where a model would have nothing to be unsure about)."""
    from sklearn.cluster import KMeans

    k = min(k, len(embeddings))
    centroids = KMeans(n_clusters=k, random_state=seed, n_init=3).fit(embeddings).cluster_centers_
    distances = ((embeddings[None, :, :] - centroids[:, None, :]) ** 2).sum(-1)  # (k, rows)
    chosen: list[int] = []
    for row in distances:  # two centroids may share a nearest row: take the next one free
        chosen.append(next(int(i) for i in np.argsort(row, kind="stable") if int(i) not in chosen))
    return chosen


# ---- the job -------------------------------------------------------------------------------------
@dataclass
class ActiveJob:
    """One `lmtune active` call: the base config and where the rows come from."""

    cfg: Config
    pool: Path
    folder: Path
    labeled: Path | None = None
    strategy: str = "breaking-ties"
    batch: int = 100
    simulate: bool = False
    rounds: int = 1
    eval_file: Path | None = None
    quiet: bool = False

    def say(self, message: str) -> None:
        from ..pipeline import _say

        _say(message, self.quiet)


def active(cfg: Config, pool: str | Path, output_dir: str | Path, labeled: str | Path | None = None,
           strategy: str = "breaking-ties", batch: int = 100, simulate: bool = False, rounds: int = 1,
           eval_file: str | Path | None = None, quiet: bool = False) -> dict[str, Any]:
    """One step of active learning in `output_dir` (or `rounds` simulated ones): merge what was
    labeled, train a round's run, ask for the next batch. Returns the state (active.json)."""
    job = ActiveJob(cfg, Path(pool), Path(output_dir), Path(labeled) if labeled else None, strategy, batch,
                    simulate, rounds, Path(eval_file) if eval_file else None, quiet)
    _check(job)
    state = _open_state(job)
    rows = read_pool(job)
    seed = read_labeled(job)
    covered = covered_by(seed, rows, job.cfg)
    if not job.simulate and state["rounds"] and not _merge_pending(job, state, seed):
        return state
    trained = 0
    while trained < job.rounds:
        trained += _round(job, state, rows, seed, covered, last=job.simulate and trained + 1 == job.rounds)
        if not _candidates(state, rows, covered):
            job.say("every pool row is labeled or pending: nothing left to ask")
            break
        if not job.simulate:
            break
    if job.simulate:
        job.say(write_curve(job.folder))
    return state


def _check(job: ActiveJob) -> None:
    """What can be refused before anything is read or loaded."""
    from ..tasks import get_task

    if job.batch < 1:
        raise ConfigError(f"--batch {job.batch}: ask for at least 1 row per round")
    if job.strategy not in STRATEGIES:
        raise ConfigError(f"--strategy {job.strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if job.rounds < 1 or (job.rounds > 1 and not job.simulate):
        raise ConfigError(f"--rounds {job.rounds}: rounds run on their own only with --simulate (at least 1); "
                          "otherwise each call is one round")
    if not get_task(job.cfg).learns_actively:
        raise ConfigError(f"lmtune active picks rows by how unsure a classifier is between its labels; a "
                          f"{job.cfg.task} model has no one label per input (active learning covers "
                          "single-label classification)")
    for flag, path in (("--pool", job.pool), ("--labeled", job.labeled), ("--eval", job.eval_file)):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{flag} {path}: no such file")


def _open_state(job: ActiveJob) -> dict[str, Any]:
    """The folder's state, or a new one; a folder belongs to one pool."""
    path = job.folder / STATE_FILE
    if not path.is_file():
        return {"pool": str(job.pool.resolve()), "simulate": job.simulate, "labels": {}, "rounds": []}
    state = json.loads(path.read_text())
    if state["pool"] != str(job.pool.resolve()):
        raise ConfigError(f"{job.folder} continues active learning over {state['pool']}, not {job.pool}; "
                          "pass that --pool, or a new --output-dir")
    if state["simulate"] != job.simulate:
        raise ConfigError(f"{job.folder} is a{' simulation' if state['simulate'] else 'n active learning run'}; "
                          f"{'add' if state['simulate'] else 'leave out'} --simulate, or use a new --output-dir")
    return state


def _save(job: ActiveJob, state: dict[str, Any]) -> None:
    job.folder.mkdir(parents=True, exist_ok=True)
    tmp = job.folder / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(job.folder / STATE_FILE)


# ---- data ----------------------------------------------------------------------------------------
def _text_columns(cfg: Config) -> list[str]:
    return [c for c in (cfg.data.text_column, cfg.data.text_pair_column) if c]


def read_pool(job: ActiveJob) -> dict[int, Record]:
    """Pool rows with text, by pool row id (1-based, in file order; rows without text keep their
    number and are never asked). With --simulate every row needs its gold label."""
    from ..pipeline import require_columns
    from ..tasks import get_task

    dataset = _read(job.pool, job.cfg)
    require_columns(get_task(job.cfg), [dataset], labeled=job.simulate)
    if ID_COLUMN in dataset.columns:
        raise DataError([DataIssue("error", str(job.pool), None, ID_COLUMN, f"the pool has a column named "
                                   f"{ID_COLUMN!r}, which to_label.csv uses for row ids", "rename it")], advice="")
    rows = {i: r for i, r in enumerate(dataset.records, 1)
            if not any(is_blank(r.fields.get(c)) for c in _text_columns(job.cfg))}
    if job.simulate:
        unlabeled = [r for r in rows.values() if is_blank(r.fields.get(job.cfg.data.label_column))]
        if unlabeled:
            raise DataError([DataIssue("error", str(job.pool), r.line, job.cfg.data.label_column,
                                       "no gold label", "--simulate labels rows from the pool's label column")
                             for r in unlabeled], advice="")
    if not rows:
        raise DataError([DataIssue("error", str(job.pool), None, job.cfg.data.text_column,
                                   "no row has text", "fill in the pool's texts")], advice="")
    return rows


def read_labeled(job: ActiveJob) -> list[Record]:
    """The rows labeled before active learning (--labeled); none for an empty file."""
    if job.labeled is None or len(job.labeled.read_text(encoding="utf-8-sig").strip().splitlines()) < 2:
        return []
    from ..pipeline import require_columns
    from ..tasks import get_task

    dataset = _read(job.labeled, job.cfg)
    require_columns(get_task(job.cfg), [dataset])
    return dataset.records


def _read(path: Path, cfg: Config) -> Dataset:
    dataset = read_table(path, cfg.data.format)
    errors = [i for i in dataset.issues if i.level == "error"]
    if errors:
        raise DataError(errors, advice="fix those lines")
    return dataset


def _key(record: Record, cfg: Config) -> tuple:
    return tuple(str(record.fields.get(c, "")).strip() for c in _text_columns(cfg))


def _candidates(state: dict[str, Any], rows: dict[int, Record], covered: set[int]) -> list[int]:
    """Pool rows that may be asked: not labeled, not pending, not a text the seed file labels."""
    taken = set(map(int, state["labels"])) | {i for r in state["rounds"] for i in r["pending"]} | covered
    return [i for i in rows if i not in taken]


def covered_by(seed: Sequence[Record], rows: dict[int, Record], cfg: Config) -> set[int]:
    """Pool rows whose text the seed file already labels."""
    keys = {_key(r, cfg) for r in seed}
    return {i for i, r in rows.items() if _key(r, cfg) in keys}


def _label_text(value: Any) -> str:
    """A label as text: 1.0 and 1 are "1" (a JSON number), a string is stripped."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def known_labels(cfg: Config, state: dict[str, Any], seed: Sequence[Record]) -> list[str]:
    """The labels a filled row may have: data.labels, else those labeled so far (none yet:
    any)."""
    from ..tasks.classification import parse_labels

    fixed = parse_labels(cfg.data.labels)
    if fixed is not None:
        return fixed
    found = [_label_text(r.fields.get(cfg.data.label_column)) for r in seed] + list(state["labels"].values())
    return sorted(set(found))


# ---- merging the filled files --------------------------------------------------------------------
def _merge_pending(job: ActiveJob, state: dict[str, Any], seed: Sequence[Record]) -> bool:
    """Read every round's file that still has pending rows; filled rows join the labeled set.
    False (nothing to train on anew) when no row was filled since the last call."""
    known = known_labels(job.cfg, state, seed)
    issues: list[DataIssue] = []
    filled: dict[str, str] = {}
    for record in state["rounds"]:
        if record["pending"]:
            found, record["pending"], problems = read_filled(job.folder / record["to_label"], record["asked"],
                                                             job.cfg.data.label_column, known)
            record["pending"] = [i for i in record["pending"] if str(i) not in state["labels"]]
            filled.update({i: v for i, v in found.items() if state["labels"].get(i) != v})  # new or corrected
            issues += problems
    if issues:
        raise DataError(issues, advice="fix the label (or empty it: the row stays pending), then run again")
    state["labels"].update(filled)
    _save(job, state)
    pending = [(r["to_label"], len(r["pending"])) for r in state["rounds"] if r["pending"]]
    job.say(f"{len(filled)} new label(s); {len(state['labels'])} pool row(s) labeled, "
            f"{sum(n for _, n in pending)} pending")
    if not filled and pending:
        job.say(f"nothing new to train on: fill in the {job.cfg.data.label_column!r} column of "
                f"{', '.join(str(job.folder / p) for p, _ in pending)}, then run the same command again")
        return False
    return True


def read_filled(path: Path, asked: Sequence[int], label_column: str,
                known: Sequence[str]) -> tuple[dict[str, str], list[int], list[DataIssue]]:
    """A to_label.csv as the user left it: labels by pool row id, the ids still pending (in the
    file, label empty) and the problems (file, line, field). Rows may be in any order; a row
    deleted from the file is neither labeled nor pending."""
    if not path.is_file() or len(path.read_text(encoding="utf-8-sig").strip().splitlines()) < 2:
        return {}, [], []
    dataset = read_table(path, "csv")
    issues = [i for i in dataset.issues if i.level == "error"]
    missing = [c for c in (ID_COLUMN, label_column) if c not in dataset.columns]
    if missing:
        return {}, [], [DataIssue("error", str(path), None, missing[0], "column missing",
                                  f"keep the {ID_COLUMN} and {label_column} columns as written")]
    labels, pending, asked_set = {}, [], set(asked)
    for r in dataset.records:
        row, label = str(r.fields[ID_COLUMN]).strip(), _label_text(r.fields[label_column])
        if not row.isdigit() or int(row) not in asked_set:
            issues.append(DataIssue("error", str(path), r.line, ID_COLUMN, f"{row!r} is not a row this file asked for",
                                    "keep the ids as written"))
        elif not label:
            pending.append(int(row))
        elif known and label not in known:
            issues.append(DataIssue("error", str(path), r.line, label_column,
                                    f"label {label!r} is not one of: {', '.join(known)}",
                                    "a new class? list every label with --data.labels a,b,c"))
        else:
            labels[row] = label
    return labels, pending, issues


# ---- one round -----------------------------------------------------------------------------------
def _round(job: ActiveJob, state: dict[str, Any], rows: dict[int, Record], seed: Sequence[Record],
           covered: set[int], last: bool) -> int:
    """Train on the labels so far (if any), then pick and ask for the next batch (unless `last`).
    Returns 1 if a run was trained."""
    number = len(state["rounds"]) + 1
    folder = job.folder / f"round-{number:03d}"
    record: dict[str, Any] = {"round": number, "strategy": job.strategy, "labels_used": len(seed) + len(state["labels"]),
                              "run": None, "accuracy": None, "asked": [], "pending": [], "to_label": None}
    run = _train(job, folder, rows, seed, state) if record["labels_used"] else None
    if run is not None:
        record["run"], record["accuracy"] = str(run.relative_to(job.folder)), _accuracy(run)
    candidates = _candidates(state, rows, covered)
    if not (last and run is not None) and candidates:  # the last simulated round asks for nothing
        record["asked"] = select(job, run, rows, candidates, number)
        if job.simulate:
            state["labels"].update({str(i): _label_text(rows[i].fields[job.cfg.data.label_column])
                                    for i in record["asked"]})
        else:
            path = write_to_label(folder / "to_label.csv", [(i, rows[i]) for i in record["asked"]],
                                  job.cfg.data.label_column)
            record["pending"], record["to_label"] = list(record["asked"]), str(path.relative_to(job.folder))
            job.say(f"round {number}: label the {len(record['asked'])} row(s) in {path} (column "
                    f"{job.cfg.data.label_column!r}; leave a row empty to skip it for now), then run the "
                    "same command again")
    state["rounds"].append(record)
    _save(job, state)
    if record["accuracy"] is not None:
        job.say(f"round {number}: {record['labels_used']} labels -> accuracy {record['accuracy']:.4f}")
    return int(run is not None)


def _train(job: ActiveJob, folder: Path, rows: dict[int, Record], seed: Sequence[Record],
           state: dict[str, Any]) -> Path:
    """An ordinary run on the seed rows and the pool rows labeled so far: <round>/run."""
    from ..pipeline import finetune

    cfg = copy.deepcopy(job.cfg)
    label = cfg.data.label_column
    columns = [*_text_columns(cfg), label]
    labeled = [{c: r.fields.get(c) for c in columns} for r in seed]
    labeled += [{**{c: rows[int(i)].fields.get(c) for c in columns}, label: value}
                for i, value in sorted(state["labels"].items(), key=lambda item: int(item[0]))]
    folder.mkdir(parents=True, exist_ok=True)
    train = folder / "train.csv"
    _write_csv(train, columns, labeled)
    cfg.data.train, cfg.data.format = str(train), "auto"
    if job.eval_file is not None:
        cfg.data.test = str(job.eval_file)
    cfg.train.output_dir, cfg.train.run_name, cfg.train.overwrite = str(folder), "run", True
    return finetune(cfg, quiet=job.quiet).root


def _accuracy(run: Path) -> float | None:
    """The run's test accuracy (scored on --eval), if it has one."""
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics.get("test", {}).get("accuracy")


def select(job: ActiveJob, run: Path | None, rows: dict[int, Record], candidates: list[int],
           number: int) -> list[int]:
    """The pool row ids to ask for next: by the strategy over the run's probabilities, or
    (no run yet) a diverse spread of the pool."""
    k = min(job.batch, len(candidates))
    if run is None:
        from .continual.routing import Embedder

        texts = [" ".join(str(rows[i].fields[c]) for c in _text_columns(job.cfg)) for i in candidates]
        picked = diverse_rows(Embedder(job.cfg.model.name)(texts), k, job.cfg.train.seed)
    else:
        probs = probabilities(run, [rows[i] for i in candidates])
        picked = STRATEGIES[job.strategy](probs, k, np.random.default_rng(job.cfg.train.seed + number))
    return [candidates[int(j)] for j in picked]


def probabilities(run: Path, records: Sequence[Record]) -> np.ndarray:
    """(records, labels) class probabilities from the run's Predictor (its temperature too)."""
    from ..inference.predictor import load

    logits, _ = load(run).logits(records)
    z = np.stack(logits).astype(np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def write_to_label(path: Path, asked: Sequence[tuple[int, Record]], label_column: str) -> Path:
    """The rows to label: their pool row id, the pool's columns, and an empty label column."""
    columns = [c for c in dict.fromkeys(k for _, r in asked for k in r.fields) if c != label_column]
    rows = [{ID_COLUMN: i, **{c: r.fields.get(c, "") for c in columns}, label_column: ""} for i, r in asked]
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(path, [ID_COLUMN, *columns, label_column], rows)
    return path


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


# ---- the learning curve --------------------------------------------------------------------------
def curves(folder: Path) -> dict[str, dict[int, list[float]]]:
    """Accuracy by labels used, per strategy, over this simulation and its siblings (folders
    beside it simulating over the same pool: other strategies and seeds)."""
    own = json.loads((folder / STATE_FILE).read_text())
    found: dict[str, dict[int, list[float]]] = {}
    for path in sorted(folder.parent.glob(f"*/{STATE_FILE}")):
        state = json.loads(path.read_text())
        if not state.get("simulate") or state["pool"] != own["pool"] or not state["rounds"]:
            continue
        points = found.setdefault(state["rounds"][-1]["strategy"], {})
        for r in state["rounds"]:
            if r["accuracy"] is not None:
                points.setdefault(r["labels_used"], []).append(r["accuracy"])
    return found


def write_curve(folder: Path) -> str:
    """learning_curve.png and curve.md in `folder` (mean accuracy over seeds); returns the table."""
    found = {s: p for s, p in curves(folder).items() if p}
    if not found:
        return "no accuracy recorded (give --eval FILE to score each round): no learning curve"
    from ..evaluation.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, points in sorted(found.items()):
        xs = sorted(points)
        ax.plot(xs, [np.mean(points[x]) for x in xs], marker="o", label=strategy)
    ax.set_xlabel("labels used")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "learning_curve.png", dpi=120)
    plt.close(fig)
    table = curve_table(found)
    (folder / "curve.md").write_text(table + "\n")
    return f"{table}\nlearning curve: {folder / 'learning_curve.png'}"


def curve_table(found: dict[str, dict[int, list[float]]]) -> str:
    """Labels used x strategy: mean accuracy (and over how many runs, when more than one)."""
    strategies = sorted(found)
    lines = ["| labels | " + " | ".join(strategies) + " |", "|---:|" + "---:|" * len(strategies)]
    for n in sorted({n for points in found.values() for n in points}):
        cells = []
        for s in strategies:
            values = found[s].get(n)
            cells.append("" if not values else f"{np.mean(values):.4f}" + (f" ({len(values)})" if len(values) > 1 else ""))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
