"""The flow of one run: config -> model -> data -> task -> method -> loop -> run folder.

Each step calls the module that owns it; this file only wires them in order.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from .config import Config, ConfigError, validate
from .data import Dataset, load_splits, read_table
from .data.checks import apply_policy, check_columns, check_rows_left
from .data.records import DataError, DataIssue
from .data.sampling import no_classes, sample_per_class
from .methods import count_parameters, get_method
from .models import default_learning_rate, load_model, load_tokenizer, quiet_transformers, resolve_model
from .run import RunFolder, new_run, write_model_card
from .tasks import get_task
from .tasks.base import Task
from .training.callbacks import Callback, EarlyStopping, Heartbeat, JsonlLog, ProgressBar
from .training.hooks import BatchSource, LossTerm, SourceWrapper
from .training.precision import EVAL_PRECISION

if TYPE_CHECKING:
    from .training.augmentation import Augmentation


def _say(message: str, quiet: bool = False) -> None:
    if not quiet:
        from rich.console import Console

        console = Console(highlight=False)
        # Off a terminal rich would wrap at 80 columns, mid-sentence; a log keeps whole lines.
        console.print(message, soft_wrap=not console.is_terminal)


def length_stats(lengths: Sequence[int], max_length: int) -> dict[str, Any]:
    """Tokens per example, and how many examples the max length would truncate."""
    if not lengths:
        return {"examples": 0}
    ordered = sorted(lengths)
    return {
        "examples": len(lengths),
        "tokens_mean": round(statistics.fmean(lengths), 1),
        "tokens_p50": ordered[len(ordered) // 2],
        "tokens_p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "tokens_max": ordered[-1],
        "over_max_length": sum(1 for n in lengths if n > max_length),
        "max_length": max_length,
    }


def prepare_data(cfg: Config, task: Task) -> tuple[dict[str, Dataset], dict[str, Any],
                                                                    list[DataIssue]]:
    """Read, check and filter the splits, then draw the K-shot training sample if
    --train.examples-per-class asks; returns datasets, a data report and all issues."""
    k = cfg.train.examples_per_class
    if k and not task.has_classes:
        raise no_classes(task.name)  # before any file is read
    splits = load_splits(cfg, task.default_format)
    require_columns(task, splits.values())
    task.fit(splits["train"])
    issues = task.check(splits)
    counts_before = {name: len(ds.records) for name, ds in splits.items()}
    classes = {c for r in splits["train"].records for c in task.record_classes(r)} if k else set()
    skipped = apply_policy(list(splits.values()), issues, cfg.data.on_error)
    report: dict[str, Any] = {}
    for name, ds in splits.items():
        report[name] = {
            "file": ds.path, "rows_read": counts_before[name], "rows_used": len(ds.records),
            "rows_skipped": skipped.get(ds.path, 0) if name != "validation" or cfg.data.validation else 0,
            "errors": sum(1 for i in issues if i.level == "error" and i.source == ds.path),
            "warnings": sum(1 for i in issues if i.level == "warning" and i.source == ds.path),
            "format": ds.format,
        }
    if k:
        report["train"].update(_sample_train(cfg, task, splits["train"], classes))
    return splits, report, issues


def _sample_train(cfg: Config, task: Task, train: Dataset, classes: set[str]) -> dict[str, Any]:
    """Replace the checked training rows by K per class (seeded, in file order) and refit the
    task on them, so its class counts and weights describe the rows it trains on; note what
    was drawn. `classes`: those read, rows with errors included. Returns the report's figures."""
    k, seed, rows = cfg.train.examples_per_class, cfg.train.seed, len(train.records)
    head = task.model_config()
    train.records = sample_per_class(train.records, task.record_classes, k, seed, train.path)
    task.fit(train)
    if task.model_config() != head:  # a class only rows with errors had: the head would lose it
        lost = sorted(classes - {c for r in train.records for c in task.record_classes(r)})
        raise ConfigError(f"--train.examples-per-class {k}: class(es) {', '.join(map(repr, lost))} "
                          f"have no rows left in {train.path} (theirs had errors); fix those rows, "
                          "or leave out --train.examples-per-class")
    several = any(len(task.record_classes(r)) > 1 for r in train.records)
    train.notes.append(f"train: {len(train.records):,} of {rows:,} rows drawn, "
                       f"{'at least ' if several else ''}{k} per class (seed {seed})")
    return {"rows_used": len(train.records), "rows_sampled": len(train.records), "examples_per_class": k}


def require_columns(task: Task, datasets: Iterable[Dataset], labeled: bool = True) -> None:
    """Stop at a field no row has, with one message per file naming its columns, before the
    task reads a label set from a column that is not there."""
    found = {str(i): i for ds in datasets
             for i in check_columns(ds, task.required_columns(ds.columns, labeled))}
    if found:  # keyed by text: a validation split carved from train shares its file
        raise DataError(list(found.values()), advice="")


def say_notes(datasets: Iterable[Dataset], quiet: bool = False) -> None:
    """What a reader assumed about a file (e.g. its format from its content), said once."""
    for ds in datasets:
        for note in ds.notes:
            _say(note, quiet)


def encode_splits(cfg: Config, task: Task, tokenizer: Any, splits: dict[str, Dataset],
                  report: dict[str, Any], quiet: bool = False) -> dict[str, Any]:
    """Encode every split; what was truncated or windowed goes into the report and is said."""
    encoded = {name: task.encode(ds.records, tokenizer, cfg.model.max_length) for name, ds in splits.items()}
    limit = cfg.model.max_length
    for name, enc in encoded.items():
        report[name].update(truncated=enc.truncated, windowed=enc.windowed,
                            lengths=length_stats(enc.lengths, limit))
        if enc.windowed:
            _say(f"{name}: {enc.windowed} input(s) longer than {limit} tokens were split "
                 "into overlapping windows (nothing is cut)", quiet)
        if enc.truncated:
            _say(f"[yellow]{name}: {enc.truncated} example(s) longer than {limit} "
                 "tokens were truncated[/] (raise --model.max-length to keep more)", quiet)
    return encoded


def finetune(cfg: Config | dict | str | Path | None, resume: str | Path | None = None,
             callbacks: Sequence[Callback] = (), quiet: bool = False, *,
             loss_terms: Sequence[LossTerm] = (), batch_source: BatchSource | SourceWrapper | None = None
             ) -> RunFolder:
    """Train a model as `cfg` says (a Config, a dict of groups, or a YAML path) and write the
    run folder; returns it. With `resume`, continue that run from its last checkpoint instead.
    callbacks, loss_terms and batch_source plug into the loop (lmtune.training.hooks); a
    batch_source may also wrap the run's own batches (a function of the default source).
    A run that fails before its first checkpoint leaves no folder behind that looks like a run;
    one that fails later says so in its status.json (failed, or interrupted: Ctrl-C, SIGTERM)."""
    created: list[RunFolder] = []
    running: list[RunFolder] = []  # the run whose status.json this process keeps (main process)
    plugins = Plugins(list(callbacks), list(loss_terms), batch_source)
    try:
        with _sigterm_as_exit():
            return _finetune(cfg, resume, plugins, quiet, created, running)
    except BaseException as error:
        for run in created:
            _remove_unfinished(run)
        for run in running:
            run.set_ended(error)
        raise


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While training, SIGTERM (`kill`, a scheduler's stop) raises SystemExit(143) instead of
    ending the process on the spot, so the run's status can say interrupted. Left alone where
    a handler is already set, or off the main thread (where Python cannot set one)."""
    import signal
    import threading

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _remove_unfinished(run: RunFolder) -> None:
    """Remove a folder this call created if nothing in it can be resumed or loaded."""
    import shutil

    from .training.checkpoint import read_pointer

    if read_pointer(run.checkpoints, "latest.txt") is None and not run.model.is_dir():
        shutil.rmtree(run.root, ignore_errors=True)


def _absolute_paths(cfg: Config) -> Config:
    """A copy of `cfg` with data files (and a local model folder) as absolute paths: what the
    run folder stores, so `--resume` and `lmtune.load` work from any directory."""
    import copy

    from .models import ALIASES

    stored = copy.deepcopy(cfg)
    for key in ("train", "validation", "test"):
        if getattr(stored.data, key):
            setattr(stored.data, key, str(Path(getattr(stored.data, key)).expanduser().resolve()))
    if stored.model.name not in ALIASES and Path(stored.model.name).expanduser().is_dir():
        stored.model.name = str(Path(stored.model.name).expanduser().resolve())
    return stored


@dataclass
class Plugins:
    """What a caller plugs into the loop (see training/hooks.py)."""

    callbacks: list[Callback]
    loss_terms: list[LossTerm]
    batch_source: BatchSource | None


def _finetune(cfg: Config | dict | str | Path | None, resume: str | Path | None,
              plugins: Plugins, quiet: bool, created: list[RunFolder], running: list[RunFolder]) -> RunFolder:
    from accelerate.utils import set_seed

    from .training.distributed import process_state

    run, resume_step = None, None
    if resume is not None:
        run, cfg, resume_step = _open_resume(Path(resume))  # before any loading
    cfg = _settle_config(_as_config(cfg))
    task, method = get_task(cfg), get_method(cfg)
    model_path = resolve_model(cfg.model.name)
    tokenizer = load_tokenizer(model_path)
    if cfg.train.learning_rate is None:
        cfg.train.learning_rate = method.learning_rate or default_learning_rate(model_path)
    cfg.train.metric_for_best, cfg.train.greater_is_better = task.selection(
        cfg.train.metric_for_best, cfg.train.greater_is_better)
    splits, report, encoded = _training_data(cfg, task, tokenizer, quiet)
    augmentation = _augmentation(cfg, task, splits["train"].records)  # checked before anything loads
    state = process_state()
    run = run or _create_run(cfg, created)
    if state.is_main_process:
        run.set_status("running")  # a resumed run too: this process now trains it
        running.append(run)
    quiet = quiet or not state.is_main_process
    set_seed(cfg.train.seed)
    model, new_weights = load_model(model_path, task.auto_model_class, **task.model_config())
    if augmentation is not None:  # synonyms from the untrained embeddings; paraphrases once
        augmentation.prepare(model, tokenizer, run.root, lambda message: _say(message, quiet))
    source = _batch_source(cfg, plugins.batch_source, encoded["train"].features, state.num_processes,
                           augmentation)
    from .training.hooks import planned_steps
    from .training.loop import train

    tc = cfg.train
    model = method.prepare(model, new_weights=new_weights, total_steps=planned_steps(source, tc.epochs, tc.max_steps),
                           peft_task_type=task.peft_task_type)
    trainable, total = count_parameters(model)
    _say(f"lmtune: {cfg.task} / {cfg.method.name} on {cfg.model.name}: {trainable:,} of {total:,} "
         f"parameters trainable ({100 * trainable / total:.2f}%); {len(splits['train'].records):,} training "
         f"examples ({len(encoded['train'].features):,} model inputs)", quiet)
    callbacks = _callbacks(cfg, run, plugins, resume_step, state.is_main_process, quiet)
    from .experiments.tracking import tracking

    with tracking(callbacks) as trackers:  # an error in here ends the trackers' runs as failed
        result = train(model, task, source, encoded.get("validation"), cfg, run.root, tokenizer.pad_token_id or 0,
                       resume=resume is not None, method=method, callbacks=callbacks,
                       loss_terms=_loss_terms(cfg, plugins))
        if state.is_main_process:
            refit = _refit(cfg, task, method, model, encoded, tokenizer.pad_token_id or 0, result)
            metrics = _run_metrics(cfg, result, report, trainable, total, state.num_processes)
            if refit:
                metrics["training"]["refit"] = refit
                _say(f"lmtune: {refit}", quiet)
            if augmentation is not None:
                metrics["training"].update(augmentation.report(result.step))
                _say(augmentation.summary(metrics["training"]), quiet)
            _write_results(run, cfg, task, method, model, tokenizer, encoded, metrics, result.best_metrics, quiet,
                           result.best_outputs)
            trackers.finish(run)  # final metrics and the written folder's plots, card, metrics, config
            if not cfg.train.keep_checkpoints:
                run.drop_checkpoints()  # model/ is the result; checkpoints only served resume
            run.set_status("finished")
            running.remove(run)
    state.wait_for_everyone()
    return run


def _refit(cfg: Config, task: Task, method: Any, model: Any, encoded: dict[str, Any], pad_id: int,
           result: Any) -> str | None:
    """Let the method refit the trained model on the training examples (`Method.refit`); when
    it does, the run's validation metrics and outputs are those of the refit model."""
    from .forward import length_sorted_batches, scored_logits

    device = next(model.parameters()).device
    batches = (batch for _, batch in length_sorted_batches(encoded["train"].features, cfg.eval.batch_size, pad_id,
                                                             device, task))
    refit = method.refit(model, batches)
    if refit and result.best_metrics:  # the validation split was evaluated: again, with the refit head
        result.best_metrics, result.best_outputs = scored_logits(model, task, encoded["validation"],
                                                                 cfg.eval.batch_size, pad_id, device, method)
    return refit


def _loss_terms(cfg: Config, plugins: Plugins) -> list[LossTerm]:
    """The caller's loss terms, then the adversarial one the config asks for (--robust.adversarial)."""
    from .training.adversarial import EmbeddingAdversary

    adversary = EmbeddingAdversary.from_config(cfg.robust)
    return plugins.loss_terms + ([adversary] if adversary is not None else [])


def _as_config(cfg: Config | dict | str | Path | None) -> Config:
    if isinstance(cfg, dict):
        return Config.from_dict(cfg)
    if isinstance(cfg, (str, Path)):
        return Config.from_yaml(cfg)
    if cfg is None:
        raise ConfigError("no config: pass a Config, a dict of groups or a YAML path (or resume=RUN)")
    return cfg


def _settle_config(cfg: Config) -> Config:
    """Check the config and apply its process-wide settings, before anything is loaded."""
    import torch

    validate(cfg)
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    quiet_transformers()
    return cfg


def _training_data(cfg: Config, task: Task, tokenizer: Any, quiet: bool
                   ) -> tuple[dict[str, Dataset], dict[str, Any], dict[str, Any]]:
    """Read, check and encode every split; say what was assumed, skipped or cut."""
    splits, report, issues = prepare_data(cfg, task)
    say_notes(splits.values(), quiet)
    for name, ds in splits.items():  # before training, not as numpy's error after an epoch
        rows = max(report[name]["rows_read"], report[name]["rows_skipped"])  # unreadable lines too
        check_rows_left(ds, rows, issues, "train on" if name == "train" else "evaluate on")
    warnings = [i for i in issues if i.level == "warning"]
    if warnings:
        _say(f"[yellow]{len(warnings)} data warning(s)[/] (first: {warnings[0]}); "
             "`lmtune data check` lists them all", quiet)
    for name, row in report.items():
        if row["rows_skipped"]:
            _say(f"[yellow]{name}: skipped {row['rows_skipped']} row(s) with errors[/] ({row['file']})", quiet)
    return splits, report, encode_splits(cfg, task, tokenizer, splits, report, quiet)


def _create_run(cfg: Config, created: list[RunFolder]) -> RunFolder:
    """The global main process alone creates and writes the run folder (other nodes may not
    share its filesystem); the others learn its name, or its error, from it."""
    from .training.distributed import from_main

    def create() -> str:
        created.append(new_run(cfg))
        _absolute_paths(cfg).save(created[-1].config)
        return cfg.train.run_name

    cfg.train.run_name = from_main(create)
    return RunFolder(Path(cfg.train.output_dir) / cfg.train.run_name)


def _augmentation(cfg: Config, task: Task, train: Sequence[Any]) -> Augmentation | None:
    """What --augment asks for (None: nothing), its ops checked against the task."""
    from .training.augmentation import Augmentation

    return Augmentation.from_config(cfg, task, train)


def _batch_source(cfg: Config, given: BatchSource | SourceWrapper | None, features: Sequence[Any],
                  processes: int, augment: SourceWrapper | None = None) -> BatchSource:
    """The caller's batch source, or the default one (augmented as --augment says, then wrapped
    by the caller's function, if any)."""
    if isinstance(given, BatchSource):
        if augment is not None:
            raise ConfigError("--augment augments the run's own batches, but a batch source replaces "
                              "them; pass a function of the default source (a SourceWrapper) instead")
        return given
    default = _default_batches(cfg, features, processes)
    default = augment(default) if augment is not None else default
    return given(default) if given is not None else default


def _default_batches(cfg: Config, features: Sequence[Any], processes: int) -> BatchSource:
    """Shuffled, length-grouped step batches of batch_size x processes x accumulation examples."""
    from .training.batching import LengthGroupedBatches

    tc = cfg.train
    return LengthGroupedBatches(features, tc.batch_size * processes * tc.grad_accum, tc.seed, tc.group_by_length)


def _callbacks(cfg: Config, run: RunFolder, plugins: Plugins, resume_step: int | None, main: bool,
               quiet: bool) -> list[Callback]:
    """Early stopping first (it marks the evaluation row), then the log, then the caller's own,
    then the progress display."""
    tc = cfg.train
    callbacks: list[Callback] = [EarlyStopping(tc.early_stopping_patience)] if tc.early_stopping_patience else []
    if main:
        callbacks.append(JsonlLog(run.log, resume_step=resume_step))
        callbacks.append(Heartbeat(run.heartbeat))
        from .experiments.tracking import trackers

        callbacks += trackers(cfg, run, resume_step)  # --train.report-to: MLflow, TensorBoard
    callbacks += plugins.callbacks
    if tc.progress and not quiet:
        callbacks.append(ProgressBar(tc.metric_for_best))
    return callbacks


def _run_metrics(cfg: Config, result: Any, report: dict[str, Any], trainable: int, total: int,
                 processes: int) -> dict[str, Any]:
    """metrics.json before evaluation results are added: what ran, how long, in what precision."""
    return {
        "task": cfg.task, "method": cfg.method.name, "model": cfg.model.name,
        "parameters": {"trainable": trainable, "total": total},
        "training": {"steps": result.step, "epochs": round(result.epoch, 3),
                     "best_step": result.best_step, "stopped_early": result.stopped_early,
                     "seconds": round(result.train_seconds, 2),
                     "samples_per_s": round(result.samples_per_s, 2),
                     "tokens_per_s": round(result.tokens_per_s, 1),
                     "final_train_loss": result.final_loss, "precision": result.precision,
                     "precision_reason": result.precision_reason,
                     "evaluation_precision": EVAL_PRECISION, "processes": processes,
                     "adversarial": cfg.robust.adversarial},
        "data": report,
    }


def _write_results(run: RunFolder, cfg: Config, task: Task, method: Any, model: Any, tokenizer: Any,
                   encoded: dict[str, Any], metrics: dict[str, Any], best: dict[str, Any],
                   quiet: bool, validation_outputs: list[Any] | None = None) -> None:
    """Score the test split, then write the model, metrics, plots, model card and per-example
    predictions. `validation_outputs`: the best evaluation's outputs, so the validation split is
    not forwarded a second time."""
    from .evaluation.plots import learning_curve
    from .forward import scored_logits

    summary = ""
    if best:
        metrics["validation"], metrics["validation_report"] = _scalars(best), best
        summary = task.summary(best)
        task.plots(best, run.root)
    if "test" in encoded:
        device = next(model.parameters()).device
        test, logits = scored_logits(model, task, encoded["test"], cfg.eval.batch_size,
                                     tokenizer.pad_token_id or 0, device, method)
        metrics["test"], metrics["test_report"] = _scalars(test), test
        summary = task.summary(test)
        task.plots(test, run.root, prefix="test_")
        _write_predictions(run, cfg, task, "test", logits, encoded)
    logits = _validation_logits(cfg, task, method, model, tokenizer, encoded, validation_outputs)
    _write_predictions(run, cfg, task, "validation", logits, encoded)
    calibrated = _calibrate(run, cfg, task, logits, encoded, metrics)
    method.save(model, tokenizer, run.model)
    run.write_metrics(metrics)
    learning_curve(run.log_rows(), run.root / "learning_curve.png", cfg.train.metric_for_best)
    write_model_card(run, cfg, metrics, summary, method.plain_auto_class or task.auto_model_class.__name__,
                     task.pipeline_tag)
    if summary:
        _say(summary, quiet)
    if calibrated:
        _say(calibrated, quiet)
    _say(f"run folder: {run.root}", quiet)


def _wants_calibration(cfg: Config, task: Task) -> bool:
    return cfg.eval.calibrate and task.calibratable


def _validation_logits(cfg: Config, task: Task, method: Any, model: Any, tokenizer: Any,
                       encoded: dict[str, Any], known: list[Any] | None = None) -> list[Any] | None:
    """The final model's outputs on the validation split for calibration and the predictions
    file: `known` (the best evaluation's, from training) or a forward pass; None when neither
    wants them (or there is no validation split)."""
    if "validation" not in encoded or not (_wants_calibration(cfg, task) or cfg.eval.write_predictions):
        return None
    if known is not None:
        return known
    from .forward import batched_logits

    logits, _ = batched_logits(model, encoded["validation"].features, cfg.eval.batch_size,
                               tokenizer.pad_token_id or 0, next(model.parameters()).device, task, method)
    return logits


def _write_predictions(run: RunFolder, cfg: Config, task: Task, split: str, logits: list[Any] | None,
                       encoded: dict[str, Any]) -> None:
    """<run>/predictions/<split>.jsonl (eval.write_predictions): one row per example of the split."""
    if logits is None or not cfg.eval.write_predictions:
        return
    from .evaluation.examples import write_examples

    write_examples(run.predictions / f"{split}.jsonl", task.example_rows(logits, encoded[split]))


def _calibrate(run: RunFolder, cfg: Config, task: Task, logits: list[Any] | None,
               encoded: dict[str, Any], metrics: dict[str, Any]) -> str:
    """Fit a temperature on the validation split's `logits` (eval.calibrate, a calibratable
    task): writes calibration.json and reliability.png, adds metrics["calibration"]; returns
    the line to say ("" when nothing was fitted)."""
    if logits is None or not _wants_calibration(cfg, task):
        return ""
    from .evaluation.calibration import summary_line, write_fit

    validation = encoded["validation"]
    fitted_on = {"data": "validation", "file": metrics.get("data", {}).get("validation", {}).get("file")}
    record = write_fit(run.root, task.calibration_scores(logits, validation), fitted_on)
    metrics["calibration"] = {key: record[key] for key in ("temperature", "before", "after")}
    return summary_line(record)


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _open_resume(root: Path) -> tuple[RunFolder, Config, int]:
    """The run to continue, its config and the step of its last checkpoint, as the main process
    reads them: the other processes' nodes need not hold the run folder (the checkpoint itself
    reaches them through training.checkpoint's collective loads)."""
    from .training.distributed import from_main, process_state

    process_state()  # the process group, which from_main speaks over
    run = RunFolder(root)
    cfg, step = from_main(lambda: (run.load_config(), _resume_step(run)))
    return run, cfg, step


def _resume_step(run: RunFolder) -> int:
    from .training.checkpoint import read_pointer

    latest = read_pointer(run.checkpoints, "latest.txt")
    if latest is None and run.metrics.is_file():
        raise FileNotFoundError(f"{run.root}: this run finished (its model is in {run.model}); there is "
                                "nothing to resume. Finished runs keep no checkpoints unless trained "
                                "with --train.keep-checkpoints true")
    if latest is None:
        raise FileNotFoundError(f"{run.root}: no checkpoint to resume from")
    return int(latest.name.split("-")[1])


def evaluate(run_dir: str | Path | None, data: str | Path, quiet: bool = False,
             base: Config | None = None, *, text_column: str | None = None,
             text_pair_column: str | None = None, label_column: str | None = None,
             on_error: str | None = None, data_format: str | None = None,
             perturb: str | Sequence[str] | None = None, perturb_rate: float = 0.1, seed: int = 0,
             synonyms: Any = "auto", attack: bool = False, attack_cap: float = 0.2,
             attack_candidates: int = 20, limit: int | None = None) -> dict[str, Any]:
    """Score a finished run on a labeled file; writes the report and plots under <run>/eval/.
    With `base` (a config naming a pretrained model) and no run, score that model as it is.
    The column arguments name the file's fields where they differ from the training data's;
    on_error="skip" leaves rows with errors out, counted and said; data_format reads the file
    as that layout (both default to the run's setting).
    Robustness (README "Robustness evaluation"): `perturb` (names, or a comma list) scores
    perturbed copies of the file at `perturb_rate`, seeded by `seed`, into robustness.json/.md;
    `attack` runs the word-substitution attack (single-label classification; `limit`: a seeded
    random sample of rows) into attack.json/.jsonl. `synonyms` is auto | wordnet | embeddings
    or a Synonyms object. The returned metrics then hold "robustness" and "attack" too."""
    from .inference.predictor import load, load_base

    from .evaluation.robustness import RobustnessRequest

    robust = RobustnessRequest.checked(perturb, perturb_rate, seed, synonyms, attack, attack_cap,
                                       attack_candidates, limit)  # before the model loads
    predictor = load_base(base) if base is not None else load(run_dir)
    if attack:
        from .evaluation.attack import check_attackable

        check_attackable(predictor.task)  # before any scoring
    if run_dir is None:
        run_dir = Path(base.train.output_dir) / f"base-{Path(base.model.name).name}"
    overrides = {"text_column": text_column, "text_pair_column": text_pair_column,
                 "label_column": label_column, "format": data_format}
    dataset = _evaluation_data(predictor, data, overrides, on_error, quiet)
    rows: list[dict[str, Any]] = []  # per-example predictions, from the same forward pass
    metrics = predictor.evaluate_records(dataset.records, rows)
    out = Path(run_dir) / "eval" / Path(data).stem
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    from .evaluation.examples import write_examples

    write_examples(out / "predictions.jsonl", rows)
    summary = predictor.task.summary(metrics)
    if "calibration" in metrics:
        from .evaluation.calibration import evaluation_line

        summary += "\n" + evaluation_line(metrics["calibration"])
    (out / "report.txt").write_text(summary + "\n")
    predictor.task.plots(metrics, out)
    _say(f"{data}\n{summary}\nreport written to {out}", quiet)
    if robust.wanted:
        metrics.update(robust.run(predictor, dataset.records, metrics, out, lambda m: _say(m, quiet), quiet))
    return metrics


def calibrate(run_dir: str | Path, data: str | Path, quiet: bool = False, *, text_column: str | None = None,
              text_pair_column: str | None = None, label_column: str | None = None,
              on_error: str | None = None, data_format: str | None = None) -> dict[str, Any]:
    """Refit a run's temperature on another labeled file (README "Calibration"): rewrites
    <run>/calibration.json, keeping the previous fit's record inside it, and reliability.png;
    says the metrics before and after, and returns the new record. Arguments as `evaluate`'s."""
    from .evaluation.calibration import format_table, not_calibratable, write_fit
    from .inference.predictor import load
    from .tasks import task_class

    name = RunFolder(Path(run_dir)).load_config().task
    if not task_class(name).calibratable:  # before the model loads
        raise not_calibratable(name)
    predictor = load(run_dir, calibrated=False)
    overrides = {"text_column": text_column, "text_pair_column": text_pair_column,
                 "label_column": label_column, "format": data_format}
    dataset = _evaluation_data(predictor, data, overrides, on_error, quiet)
    logits, encoded = predictor.logits(dataset.records, with_labels=True, calibrated=False)
    fitted_on = {"data": str(data), "file": str(Path(data).resolve()), "rows": len(dataset.records)}
    record = write_fit(Path(run_dir), predictor.task.calibration_scores(logits, encoded), fitted_on,
                       keep_previous=True)
    _say(f"{format_table(record)}\ncalibration written to {RunFolder(Path(run_dir)).calibration}", quiet)
    return record


def _evaluation_data(predictor: Any, data: str | Path, overrides: dict[str, str | None],
                     on_error: str | None, quiet: bool) -> Dataset:
    """The labeled file read, checked and filtered as training data is, under its own column
    names (`overrides`: the run's data settings that differ for this file)."""
    settings = predictor.cfg.data  # the predictor's own copy of the run's config
    if overrides.get("text_pair_column") and not settings.text_pair_column:
        raise ConfigError("this model reads single texts; --text-pair-column does not apply to it")
    for key, value in overrides.items():
        if value is not None:
            setattr(settings, key, value)
    policy = on_error or settings.on_error
    if policy not in ("raise", "skip"):
        raise ConfigError(f"--data.on-error {policy!r}: choose raise or skip")
    dataset = read_table(data, settings.format, predictor.task.default_format)
    say_notes([dataset], quiet)
    require_columns(predictor.task, [dataset])
    issues = predictor.task.check({"test": dataset})
    rows_read = len(dataset.records)
    skipped = apply_policy([dataset], issues, policy)[dataset.path]
    check_rows_left(dataset, max(rows_read, skipped), issues, "evaluate")
    if skipped:
        _say(f"[yellow]{data}: skipped {skipped} row(s) with errors[/]; scoring the other "
             f"{len(dataset.records)} (`lmtune data check` lists the errors)", quiet)
    return dataset
