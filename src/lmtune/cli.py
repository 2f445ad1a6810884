"""The `lmtune` command: train, evaluate, predict, generate, export, serve, data check, runs,
search.

Flags and the YAML config are the same schema: any field is `--group.field value`
(e.g. `--train.epochs 2`), and the common data/model flags have short forms.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .config import Config, ConfigError, FieldInfo, commented_yaml, describe

# Short flags -> config keys (the long form `--group.field` always works too).
SHORTHANDS = {
    "task": "task", "model": "model.name", "method": "method.name", "train": "data.train",
    "validation": "data.validation", "test": "data.test", "text_column": "data.text_column",
    "text_pair_column": "data.text_pair_column", "label_column": "data.label_column",
    "label_separator": "data.label_separator", "class_weights": "train.class_weights",
    "epochs": "train.epochs", "run_name": "train.run_name", "output_dir": "train.output_dir",
    "max_length": "model.max_length", "seed": "train.seed",
}


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    fields = {info.key: info for _, _, infos in describe() for info in infos}
    for flag, key in SHORTHANDS.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", dest=flag, default=None,
                            help=_escape(fields[key].help) + (f" (= --{_flag(key)})" if "." in key
                                                              else f" (default: {_default_text(fields[key])})"))
    parser.add_argument("--multi-label", action="store_true", default=None,
                        help="labels are lists (or --label-separator joined); sigmoid + per-label F1")
    parser.add_argument("--config", help="YAML config (groups: model, data, method, train, eval)")


def _flag(key: str) -> str:
    """A config key as its command-line flag (without the dashes): train.learning_rate -> train.learning-rate."""
    return key.replace("_", "-")


def _escape(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help strings


def _default_text(info: FieldInfo) -> str:
    """A value as typed on the command line (none, true/false)."""
    if info.value is None:
        return "none"
    return str(info.value).lower() if isinstance(info.value, bool) else str(info.value)


def _add_config_fields(parser: argparse.ArgumentParser, groups: Sequence[str] | None = None) -> None:
    """Every config field (of `groups`, default all) as `--group.field VALUE`, grouped as in the
    YAML file, with its default and description from the typed config (so the help cannot
    drift from the schema)."""
    for name, about, infos in describe():
        if not name or (groups is not None and name not in groups):
            continue  # top-level fields (task) have their own short flags
        section = parser.add_argument_group(f"--{name}.* ({about})" if about else name)
        for info in infos:
            is_bool = info.type_name == "bool"
            section.add_argument(f"--{_flag(info.key)}", dest=info.key, default=argparse.SUPPRESS,
                                 metavar=info.type_name.upper(), nargs="?" if is_bool else None,
                                 const="true" if is_bool else None,
                                 help=f"{_escape(info.help)} (default: {_default_text(info)})")


def _run_groups() -> list[str]:
    """The config groups of a run, that commands training many runs take as --group.field flags."""
    return [name for name, _, _ in describe() if name not in ("", "search", "serve", "export", "continual")]


def _add_group_flags(parser: argparse.ArgumentParser, name: str, short: dict[str, Any]) -> None:
    """A command that reads one config group (serve, export): --config FILE (its `name:`
    section), a short flag per field (`short`: field -> None for --field VALUE, a list of
    choices, a constant for a switch, or (flag, constant) for a switch named otherwise), and
    every field as `--name.field` too. Both forms set the same field; the last given wins."""
    fields = {info.key: info for group, _, infos in describe() if group == name for info in infos}
    parser.add_argument("--config", help=f"YAML config; its {name}: section sets these (flags win)")
    for field_name, form in short.items():
        info = fields[f"{name}.{field_name}"]
        flag, const = form if isinstance(form, tuple) else (f"--{_flag(field_name)}", form)
        if isinstance(form, (str, tuple)):  # a switch: sets the field to `const`
            kind: dict[str, Any] = {"action": "store_const", "const": const,
                                    "help": f"= --{_flag(info.key)} {const}: {_escape(info.help)}"}
        else:
            kind = {"choices": form, "metavar": info.type_name.upper() if form is None else None,
                    "help": f"{_escape(info.help)} (default: {_default_text(info)})"}
        parser.add_argument(flag, dest=info.key, default=argparse.SUPPRESS, **kind)
    _add_config_fields(parser, groups=(name,))


def _normalized(argv: Sequence[str]) -> list[str]:
    """`--group.field_name` and `--group.field-name` are the same flag: argparse knows the dashed one."""
    out: list[str] = []
    for token in argv:
        if out and out[-1] == "--sort" and token.startswith("-") and not token.startswith("--"):
            out[-1] = f"--sort={token}"  # `--sort -accuracy` (descending), not an unknown option
            continue
        if token.startswith("--") and "." in token.split("=", 1)[0]:
            key, sep, value = token.partition("=")
            token = key.replace("_", "-") + sep + value
        out.append(token)
    return out


def _unknown(extra: Sequence[str], parser: argparse.ArgumentParser, config_fields: bool) -> ConfigError:
    """The error for flags argparse did not know, with the closest known flag as a suggestion."""
    token = next((e for e in extra if e.startswith("-")), extra[0])
    flag = token.split("=", 1)[0]
    if config_fields and flag.startswith("--") and "." in flag:
        try:  # the config's own message: unknown key '...'; did you mean --group.field?
            Config().override(flag[2:], "", flag)
        except ConfigError as exc:
            return exc
    options = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    close = difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
    if not flag.startswith("-"):
        return ConfigError(f"unexpected argument {token!r}" + ("; config fields are --group.field VALUE"
                                                                if config_fields else ""))
    hint = f"; did you mean {close[0]}?" if close else f"; see lmtune {parser.prog.split()[-1]} --help"
    return ConfigError(f"unknown option {flag!r}{hint}")


def _add_prompting_flags(parser: argparse.ArgumentParser) -> None:
    """Using a pretrained model without a run: prompt-based classification, or generation."""
    parser.add_argument("--model", help="a pretrained model (alias, folder, hub id) instead of a run")
    parser.add_argument("--task", help="with --model: generation")
    parser.add_argument("--zero-shot", action="store_true",
                        help="classify by prompting --model (decoder: label likelihood; encoder: similarity)")
    parser.add_argument("--labels", help="a,b,c or value=word pairs (0=negative,1=positive)")
    parser.add_argument("--shots", type=int, default=0, help="in-context examples (few-shot)")
    parser.add_argument("--description", help="encoder: how a label is described, e.g. 'a {label} review'")
    parser.add_argument("--instruction", help="decoder: the instruction ({labels}: the label words)")
    parser.add_argument("--shots-from", help="labeled file to draw the examples from")
    parser.add_argument("--text-column", help="text field of --data / --shots-from (default text)")
    parser.add_argument("--label-column", help="label field of --data / --shots-from (default label)")


def _overrides(extra: Sequence[str]) -> list[tuple[str, str]]:
    """Parse `--group.field value` / `--group.field=value` pairs (the benchmarks pass theirs on
    to Config.override this way)."""
    pairs, i = [], 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or "." not in token:
            raise ConfigError(f"unexpected argument {token!r}; config fields are --group.field VALUE")
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            value, i = extra[i + 1], i + 2
        else:
            value, i = "true", i + 1
        pairs.append((key, value))
    return pairs


def _field_flags(args: argparse.Namespace) -> dict[str, str]:
    """The `--group.field VALUE` flags given: dotted key -> value."""
    return {key: value for key, value in vars(args).items() if "." in key}


def build_config(args: argparse.Namespace, extra: Sequence[str] = ()) -> Config:
    """The YAML file (--config), then the short flags, then `--group.field` flags, in that order."""
    if extra:
        raise ConfigError(f"unexpected arguments: {' '.join(extra)}")
    cfg = Config.from_yaml(args.config) if getattr(args, "config", None) else Config()
    for flag, key in SHORTHANDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            cfg.override(key, value, f"--{flag.replace('_', '-')}")
    if getattr(args, "multi_label", None):
        cfg.data.multi_label = True
    for key, value in _field_flags(args).items():
        cfg.override(key, value, f"--{_flag(key)}")
    return cfg


def cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .pipeline import finetune
    from .training.distributed import end_processes

    if args.resume:
        if extra or _field_flags(args) or any(getattr(args, f, None) is not None for f in SHORTHANDS):
            raise ConfigError("--resume continues a run with its saved config; do not pass other flags")
        finetune(None, resume=args.resume)
    else:
        finetune(build_config(args, extra))
    end_processes()  # every process is past finetune's last barrier
    return 0


def cmd_evaluate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .pipeline import evaluate

    robust = args.perturb is not None or args.attack
    if args.zero_shot and robust:
        raise ConfigError("--perturb and --attack score a run (or --model with --task generation); "
                          "they do not apply to --zero-shot")
    if args.zero_shot:
        return _evaluate_prompted(args)
    if args.run is None and args.model is None:
        raise ConfigError("give a run folder, or --model with --zero-shot (or --task generation)")
    if args.limit is not None and not args.attack:
        raise ConfigError("--limit applies to --zero-shot (the first N rows) and --attack (a random sample)")
    evaluate(args.run, args.data, base=None if args.run else _base_config(args),
             text_column=args.text_column, text_pair_column=args.text_pair_column,
             label_column=args.label_column, on_error=args.on_error, data_format=args.data_format,
             perturb=args.perturb, perturb_rate=args.perturb_rate, seed=args.seed, synonyms=args.synonyms,
             attack=args.attack, attack_cap=args.attack_cap, attack_candidates=args.attack_candidates,
             limit=args.limit)
    return 0


def cmd_calibrate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Refit a run's temperature on labeled data (pipeline.calibrate)."""
    from .pipeline import calibrate

    calibrate(args.run, args.data, text_column=args.text_column, text_pair_column=args.text_pair_column,
              label_column=args.label_column, data_format=args.data_format)
    return 0


def _add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    """A file whose fields are named differently from the training data's can still be scored
    (--text-column and --label-column come with the prompting flags); and the robustness
    checks (perturbed copies, the attack)."""
    parser.add_argument("--text-pair-column", help="second text field of --data (text-pair models)")
    parser.add_argument("--data.on-error", "--data.on_error", dest="on_error", choices=["raise", "skip"],
                        help="skip: leave out rows with errors (counted and printed); default: the run's")
    parser.add_argument("--data.format", dest="data_format",
                        choices=["auto", "csv", "tsv", "jsonl", "parquet", "conll", "squad"],
                        help="how to read --data (auto: by extension, else the run's usual layout)")
    robust = parser.add_argument_group("robustness (README: Robustness evaluation)")
    robust.add_argument("--perturb", nargs="?", const="all", metavar="KINDS",
                        help="also score perturbed copies of --data, per kind: typo,case,punct,synonym,swap "
                             "(also insert, delete; alone: the first five); writes robustness.json/.md")
    robust.add_argument("--perturb-rate", type=float, default=0.1, metavar="SHARE",
                        help="share of the words each perturbation changes, in (0, 1] (default: 0.1)")
    robust.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seeds the perturbations and --limit's sample (default: 0)")
    robust.add_argument("--synonyms", default="auto", choices=["auto", "wordnet", "embeddings"],
                        help="where synonyms come from (auto: WordNet if installed, else the model's "
                             "embedding neighbours)")
    robust.add_argument("--attack", action="store_true",
                        help="word-substitution attack on a classification run; writes attack.json/.jsonl")
    robust.add_argument("--attack-cap", type=float, default=0.2, metavar="SHARE",
                        help="most words an attack may change, as a share of the words (default: 0.2)")
    robust.add_argument("--attack-candidates", type=int, default=20, metavar="N",
                        help="synonyms tried per word (default: 20)")


def _base_config(args: argparse.Namespace) -> Config:
    """A config for using a pretrained model as it is (no run folder), for a task that can."""
    from .tasks import task_class

    cfg = Config()
    cfg.model.name, cfg.task = args.model, args.task or "generation"
    if not task_class(cfg.task).usable_untrained:
        raise ConfigError(f"--model without a run folder works for --task generation, or with "
                          f"--zero-shot for classification; a {cfg.task} head would be untrained")
    if getattr(args, "max_length", None):
        cfg.model.max_length = int(args.max_length)
    return cfg


def _prompted(args: argparse.Namespace) -> Any:
    """The prompt-based classifier for --zero-shot (with --shots K examples from --shots-from):
    a Predictor, like a run's."""
    from .inference.predictor import load_prompted
    from .prompting import LabelSet, draw_shots

    if not args.model or not args.labels:
        raise ConfigError("--zero-shot needs --model (a decoder or an encoder) and --labels a,b,...")
    labels = LabelSet.parse(args.labels)
    shots = []
    if args.shots:
        if not args.shots_from:
            raise ConfigError("--shots K needs --shots-from FILE (labeled examples to draw from)")
        from .data import read_table

        records = read_table(args.shots_from).records
        shots = draw_shots(records, lambda r: str(r.fields.get(args.text_column or "text", "")),
                           lambda r: str(r.fields.get(args.label_column or "label", "")), labels, args.shots)
    options = {k: v for k, v in (("description", args.description), ("instruction", args.instruction)) if v}
    return load_prompted(args.model, labels, shots, text_column=args.text_column or "text",
                         label_column=args.label_column or "label", **options)


def _evaluate_prompted(args: argparse.Namespace) -> int:
    from .data import read_table
    from .evaluation.metrics import format_report
    from .pipeline import require_columns

    dataset = read_table(args.data)
    rows = dataset.records[: args.limit] if args.limit else dataset.records
    predictor = _prompted(args)
    require_columns(predictor.task, [dataset])
    metrics = predictor.evaluate_records(rows)
    shots = f"{args.shots}-shot" if args.shots else "zero-shot"
    print(format_report(metrics, title=f"{args.model}, {shots}, {len(rows)} examples of {args.data}"))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(metrics, handle, indent=1)
    return 0


def _read_inputs(path: str, text_field: str, pair_field: str | None) -> tuple[list[dict], list[str], list[str] | None]:
    from .data import read_table
    from .data.checks import check_columns
    from .data.records import DataError

    dataset = read_table(path)
    if dataset.issues:
        raise ValueError("\n".join(str(i) for i in dataset.issues))
    fields = [f for f in (text_field, pair_field) if f]
    missing = check_columns(dataset, [(f, None) for f in fields])
    if missing:  # one message with the file's columns, not one per row
        raise DataError(missing, advice=f"The model reads {', '.join(map(repr, fields))}.")
    rows, texts, pairs = [], [], [] if pair_field else None
    for record in dataset.records:
        if text_field not in record.fields:
            raise ValueError(f"{record.where}: field {text_field!r} missing (the model reads "
                             f"{text_field!r}; rename the column or field)")
        rows.append(record.fields)
        texts.append(str(record.fields[text_field]))
        if pairs is not None:
            pairs.append(str(record.fields.get(pair_field, "")))
    return rows, texts, pairs


def cmd_predict(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .inference.predictor import load

    if args.zero_shot:
        if not args.texts and not args.input:
            raise ConfigError("give texts to classify, or --input FILE")
        predictor = _prompted(args)
    elif args.run is None:
        raise ConfigError("give a run folder (or --model with --zero-shot --labels ...)")
    else:
        predictor = load(args.run, backend=args.backend, quantized=args.quantized, calibrated=not args.raw_scores)
    data = predictor.cfg.data
    options = {"top_k": args.top_k} if args.top_k != 1 else {}
    if args.question is not None or args.context is not None:
        if args.question is None or args.context is None:
            raise ConfigError("QA prediction needs both --question and --context")
        texts, pairs = [args.question], [args.context]
        rows = [{"question": args.question}]
    elif args.input:
        rows, texts, pairs = _read_inputs(args.input, *predictor.task.input_fields())
    else:
        if not args.texts:
            raise ConfigError("give texts to classify, or --input FILE")
        texts, pairs = list(args.texts), ([args.pair] * len(args.texts) if args.pair else None)
        rows = [{data.text_column: t} for t in texts]
    predictions = predictor.predict(texts, pairs, **options)
    cut = sum(1 for p in predictions if isinstance(p, dict) and p.get("truncated"))
    if cut:
        print(f"lmtune: {cut} of {len(predictions)} input(s) were longer than "
              f"{predictor.cfg.model.max_length} tokens and were truncated (marked \"truncated\": true); "
              "the model only read their start", file=sys.stderr)
    as_json = bool(args.output or args.json)
    shown = predictor.task.format_prediction
    _write((json.dumps({**row, "prediction": p}) + "\n" if as_json else shown(p, row.get(data.text_column, ""))
            for row, p in zip(rows, predictions)), args.output, "predictions")
    return 0


def _write(lines: Any, output: str | None, what: str) -> None:
    """Lines to the terminal, or to a file (then say how many were written)."""
    out = open(output, "w") if output else sys.stdout
    count = 0
    try:
        for line in lines:
            out.write(line)
            count += 1
    finally:
        if output:
            out.close()
            print(f"wrote {count} {what} to {output}")


def cmd_generate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Generate from a run (or a base model with --model); streams tokens for a single prompt."""
    from .inference.predictor import load, load_base

    if args.run is None and args.model is None:
        raise ConfigError("give a run folder, or --model (e.g. smollm2)")
    predictor = load(args.run) if args.run else load_base(_base_config(args))
    if not predictor.task.generates:
        raise ConfigError(f"{args.run} is a {predictor.task.name} run; use lmtune predict")
    options = {k: v for k, v in (("max_new_tokens", args.max_new_tokens), ("temperature", args.temperature),
                                 ("top_p", args.top_p), ("stop", args.stop), ("seed", args.seed)) if v is not None}
    if args.input:
        from .data import read_table

        records = read_table(args.input).records
        items = [r.fields.get("messages") or r.fields.get(predictor.cfg.data.prompt_column, "") for r in records]
    elif args.prompts:
        items = list(args.prompts)
    else:
        raise ConfigError("give prompts, or --input FILE (JSONL with prompt or messages)")
    stream = len(items) == 1 and not (args.output or args.json or args.no_stream)
    outputs = predictor.predict(items, stream=stream, **options)
    as_json = bool(args.output or args.json)
    _write((json.dumps({"input": item, **o}) + "\n" if as_json else o["generated_text"] + "\n"
            for item, o in zip(items, outputs) if as_json or not stream), args.output, "generations")
    return 0


def group_settings(args: argparse.Namespace, name: str) -> Any:
    """One config group for a command that reads only it (serve, export): the YAML file's
    section (--config), then the flags in the order given (a short flag such as --port and its
    `--serve.port` form set the same field), checked."""
    from .config import check_group

    cfg = Config.from_yaml(args.config) if getattr(args, "config", None) else Config()
    for key, value in _field_flags(args).items():
        cfg.override(key, value, f"--{_flag(key)}")
    check_group(cfg, name)
    return getattr(cfg, name)


def cmd_explain(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Token attributions (integrated gradients) for a run's predictions: coloured text, JSON
    lines, or an HTML page."""
    from .inference.explain import DEFAULT_STEPS, explain, render_terminal, write_html
    from .inference.predictor import load

    if args.run is None:
        raise ConfigError("give a run folder, then texts to explain (or --input FILE)")
    predictor = load(args.run)
    if args.question is not None or args.context is not None:
        if args.question is None or args.context is None:
            raise ConfigError("explaining a QA answer needs both --question and --context")
        texts, pairs = [args.question], [args.context]
    elif args.input:
        text_field, pair_field = predictor.task.input_fields()
        _, texts, pairs = _read_inputs(args.input, args.text_column or text_field, pair_field)
    elif args.texts:
        texts, pairs = list(args.texts), ([args.pair] * len(args.texts) if args.pair else None)
    else:
        raise ConfigError("give texts to explain, or --input FILE")
    explanations = explain(predictor, texts, pairs, label=args.label,
                           n_steps=DEFAULT_STEPS if args.steps is None else args.steps)
    if args.json:
        _write((json.dumps(e.to_dict()) + "\n" for e in explanations), None, "explanations")
    else:
        render_terminal(explanations)
    if args.html:
        print(f"wrote {len(explanations)} explanation(s) to {write_html(explanations, args.html)}")
    return 0


def cmd_export(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .export import export_run

    settings = group_settings(args, "export")
    out = export_run(args.run, settings)
    if settings.merge:
        print(f"merged model written to {out} (loads with plain transformers)")
    return 0


def cmd_serve(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .serving import serve

    serve(args.runs, group_settings(args, "serve"))
    return 0


def cmd_search(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Hyperparameter search: the base config (--config and any --group.field) trained over the
    space (--space), each trial a run folder under <output_dir>/<study>/."""
    from .experiments.search import search

    search(build_config(args, extra), config_name=getattr(args, "config", None))
    return 0


def cmd_continual(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Continual learning: the sequence's steps one after another (or resume a continual run)."""
    from .experiments.continual.runner import continual

    overrides = _yaml_overrides(args.config) if args.config else []
    overrides += list(_field_flags(args).items())
    if args.resume:
        if args.sequence or overrides:
            raise ConfigError("--resume continues a continual run with its saved settings; do not pass "
                              "--sequence or other flags")
        continual(None, resume=args.resume, quiet=args.quiet)
        return 0
    if not args.sequence:
        raise ConfigError("give --sequence SEQUENCE.yaml (the steps in order), or --resume RUN_DIR")
    continual(args.sequence, overrides, quiet=args.quiet)
    return 0


def cmd_active(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Active learning: train on the labels so far, ask for the next batch (or simulate rounds)."""
    from .experiments.active import active

    output = args.active_dir or str(Path("runs") / f"active-{Path(args.pool).stem}")
    active(build_config(args, extra), args.pool, output, labeled=args.labeled, strategy=args.strategy,
           batch=args.batch, simulate=args.simulate, rounds=args.rounds, eval_file=args.eval_file)
    return 0


def _yaml_overrides(path: str) -> list[tuple[str, Any]]:
    """A config YAML as group.field pairs (checked as a config first), applied over the
    sequence file's own config."""
    import yaml

    Config.from_yaml(path)
    values = yaml.safe_load(Path(path).read_text()) or {}
    return [(f"{group}.{key}", value) for group, fields in values.items() if isinstance(fields, dict)
            for key, value in fields.items()] + [(k, v) for k, v in values.items() if not isinstance(v, dict)]


def cmd_data_check(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Print every data problem with file:line:field, counts, and token length statistics."""
    from .models import load_tokenizer, quiet_transformers, resolve_model
    from .pipeline import encode_splits, prepare_data, say_notes
    from .tasks import get_task

    cfg = build_config(args, extra)
    if cfg.data.train is None:
        raise ConfigError("data check needs --train FILE (and optionally --validation/--test)")
    quiet_transformers()
    cfg.data.on_error = "skip"  # report everything instead of stopping at the first error
    task = get_task(cfg)
    tokenizer = load_tokenizer(resolve_model(cfg.model.name))
    splits, report, issues = prepare_data(cfg, task)
    say_notes(splits.values())
    encode_splits(cfg, task, tokenizer, splits, report, quiet=True)

    for issue in issues:
        print(f"{issue.level.upper():7} {issue}")
    kinds = Counter((i.level, i.message.split(" (")[0].split(":")[0]) for i in issues)
    print("\nSummary")
    for (level, kind), count in sorted(kinds.items()):
        print(f"  {count:6d} {level:7} {kind}")
    for name in splits:
        row = report[name]
        stats = row["lengths"]
        print(f"\n{name}: {row['file']}: {row['rows_read']} examples, {row['errors']} error(s), "
              f"{row['warnings']} warning(s)")
        if row.get("rows_sampled"):  # --train.examples-per-class: what follows describes the sample
            print(f"  {row['rows_sampled']} drawn, {row['examples_per_class']} per class; the figures below are theirs")
        if stats.get("examples"):
            print(f"  tokens per example: mean {stats['tokens_mean']}, median {stats['tokens_p50']}, "
                  f"p95 {stats['tokens_p95']}, max {stats['tokens_max']}; "
                  f"{stats['over_max_length']} over max length {cfg.model.max_length} "
                  f"({'split into windows' if task.windows_long_inputs else 'would be truncated'})")
        if name == "train" and hasattr(task, "label_counts"):
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(task.label_counts.items()))
            print(f"  labels: {counts}")
    errors = sum(1 for i in issues if i.level == "error")
    print(f"\n{errors} error(s), {len(issues) - errors} warning(s)")
    return 1 if errors else 0


def cmd_runs(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """List the runs under a folder (sorted, filtered, as JSON lines), or compare a few."""
    from .experiments import runs as view

    if args.compare:
        if args.sort or args.filter:
            raise ConfigError("--compare shows the runs it names; --sort and --filter apply to the listing")
        result = view.compare_runs(args.dir, args.compare)
        if args.json:
            print(json.dumps(result))
        else:
            view.print_comparison(result)
        return 0
    runs = view.filter_runs(view.list_runs(args.dir), args.filter)
    if args.sort:
        runs = view.sort_runs(runs, args.sort)
    if not runs:
        print(f"no run under {args.dir} matches {' and '.join(args.filter)}", file=sys.stderr)
    elif args.json:
        keys = view.differing_keys(runs)
        for run in runs:
            print(json.dumps({**run.to_json(), "hyperparameters": {k: run.config.get(k) for k in keys}}))
    else:
        view.print_runs(runs)
    return 0


def cmd_ui(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """The web dashboard over a runs folder (read-only)."""
    from .serving import read_api_key
    from .ui import run_ui

    run_ui(args.runs, args.host, args.port, read_api_key(args.api_key_file))
    return 0


def cmd_config(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Print the whole config (defaults, with any flags given applied) as YAML with each
    field's description as a comment: a file to start from."""
    cfg = build_config(args, extra)
    print(f"# lmtune config for {cfg.task} / {cfg.method.name}; edit, then: lmtune train --config FILE\n"
          + commented_yaml(cfg), end="")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmtune", allow_abbrev=False,
                                     description="Fine-tune pretrained language models on NLP tasks.")
    parser.add_argument("--version", action="version", version=f"lmtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    usage = "%(prog)s [--config FILE] [--task TASK] [--model MODEL] [--train FILE] ... [--group.field VALUE ...]"
    train = sub.add_parser("train", allow_abbrev=False, help="fine-tune a model; writes a run folder", usage=usage,
                           epilog="Every config field is a flag (listed above by group); `lmtune config` "
                                  "prints them all as a YAML file to start from.")
    _add_data_flags(train)
    train.add_argument("--resume", help="continue an interrupted run from its last checkpoint")
    _add_config_fields(train)
    train.set_defaults(func=cmd_train)

    config = sub.add_parser("config", allow_abbrev=False, usage=usage,
                            help="print the full config as commented YAML (e.g. --task ner --method lora)")
    _add_data_flags(config)
    _add_config_fields(config)
    config.set_defaults(func=cmd_config)

    evaluate = sub.add_parser("evaluate", allow_abbrev=False, help="score a run on labeled data")
    evaluate.add_argument("run", nargs="?")
    evaluate.add_argument("--data", required=True, help="labeled file (same columns as training)")
    evaluate.add_argument("--limit", type=int, help="zero-shot: the first N rows only; --attack: a seeded "
                                                    "random sample of N rows")
    evaluate.add_argument("--output", help="zero-shot: write the metrics JSON here")
    _add_prompting_flags(evaluate)
    _add_evaluate_flags(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    generate = sub.add_parser("generate", allow_abbrev=False, help="generate text with a generation run")
    generate.add_argument("run", nargs="?")
    generate.add_argument("prompts", nargs="*")
    generate.add_argument("--model", help="a base model instead of a run (e.g. smollm2)")
    generate.add_argument("--input", help="JSONL with prompt (or messages) per line")
    generate.add_argument("--output", help="write JSONL generations here")
    generate.add_argument("--json", action="store_true", help="print JSON lines")
    generate.add_argument("--max-new-tokens", type=int)
    generate.add_argument("--temperature", type=float, help="0: greedy (default); > 0: sampling")
    generate.add_argument("--top-p", type=float)
    generate.add_argument("--stop", help="stop string")
    generate.add_argument("--seed", type=int)
    generate.add_argument("--max-length", type=int, help="with --model: longest prompt in tokens")
    generate.add_argument("--no-stream", action="store_true", help="print the text when it is complete")
    generate.set_defaults(func=cmd_generate, task="generation")

    predict = sub.add_parser("predict", allow_abbrev=False, help="predict with a run")
    predict.add_argument("run", nargs="?")
    predict.add_argument("texts", nargs="*")
    predict.add_argument("--pair", help="second text, for text-pair models")
    predict.add_argument("--question", help="QA: the question (with --context)")
    predict.add_argument("--context", help="QA: the passage to answer from")
    predict.add_argument("--top-k", type=int, default=1, help="QA: how many answers")
    predict.add_argument("--input", help="CSV/TSV/JSONL/Parquet file of inputs")
    predict.add_argument("--output", help="write JSONL predictions here")
    predict.add_argument("--json", action="store_true", help="print JSON lines")
    predict.add_argument("--backend", choices=["pytorch", "onnx"], default="pytorch",
                         help="onnx: the model from `lmtune export --format onnx`")
    predict.add_argument("--quantized", action="store_true", help="onnx: the int8 model")
    predict.add_argument("--raw-scores", action="store_true",
                         help="probabilities from the raw logits, without the run's temperature (calibration.json)")
    _add_prompting_flags(predict)
    predict.set_defaults(func=cmd_predict)

    explain = sub.add_parser("explain", allow_abbrev=False,
                             help="which words a run's predictions rest on (integrated gradients)")
    explain.add_argument("run", nargs="?")
    explain.add_argument("texts", nargs="*")
    explain.add_argument("--pair", help="second text, for text-pair models")
    explain.add_argument("--question", help="QA: the question (with --context)")
    explain.add_argument("--context", help="QA: the passage to answer from")
    explain.add_argument("--input", help="CSV/TSV/JSONL/Parquet file of inputs")
    explain.add_argument("--text-column", help="with --input: the column to explain (default: the "
                                               "model's text column)")
    explain.add_argument("--label", help="classification: explain this label (or a,b) instead of the "
                                         "predicted one; NER: only entities of this type")
    explain.add_argument("--steps", type=int, help="integration steps to start from (default 50; doubled "
                                                   "up to 400 while the completeness error is over 5%%)")
    explain.add_argument("--html", metavar="FILE", help="also write the explanations as an HTML page")
    explain.add_argument("--json", action="store_true", help="print one JSON object per input")
    explain.set_defaults(func=cmd_explain)

    calibrate = sub.add_parser("calibrate", allow_abbrev=False,
                               help="refit a run's temperature (probability calibration) on labeled data",
                               description="Fit the temperature that predictions divide logits by on a labeled "
                                           "file (held-out data), rewrite <run>/calibration.json (the previous "
                                           "fit is kept inside it) and reliability.png, and print ECE, MCE, "
                                           "Brier score and NLL before and after. Classification and NER runs.")
    calibrate.add_argument("run")
    calibrate.add_argument("--data", required=True, help="labeled file (same columns as training)")
    calibrate.add_argument("--text-column", help="text field of --data (default: the run's)")
    calibrate.add_argument("--label-column", help="label field of --data (default: the run's)")
    calibrate.add_argument("--text-pair-column", help="second text field of --data (text-pair models)")
    calibrate.add_argument("--data.format", dest="data_format",
                           choices=["auto", "csv", "tsv", "jsonl", "parquet", "conll", "squad"],
                           help="how to read --data (auto: by extension, else the run's usual layout)")
    calibrate.set_defaults(func=cmd_calibrate)

    export = sub.add_parser("export", allow_abbrev=False, help="export a run for use outside lmtune")
    export.add_argument("run")
    _add_group_flags(export, "export", {"merge": "true", "format": ["onnx"], "quantize": ["int8"], "data": None,
                                        "sample": None, "output": None})
    export.set_defaults(func=cmd_export)

    serve = sub.add_parser("serve", allow_abbrev=False, help="serve runs over HTTP")
    serve.add_argument("runs", nargs="+")
    _add_group_flags(serve, "serve", {"host": None, "port": None, "api_key_file": None, "max_batch_size": None,
                                      "max_wait_ms": None, "batching": ("--no-batching", "false"),
                                      "max_body_bytes": None, "max_inputs": None, "max_chars": None,
                                      "backend": ["pytorch", "onnx"], "quantized": "true"})
    serve.set_defaults(func=cmd_serve)

    search = sub.add_parser("search", allow_abbrev=False, help="hyperparameter search: many runs over a search space",
                            usage="%(prog)s --config BASE.yaml --space SPACE.yaml [--trials N] [--workers N] ... "
                                  "[--group.field VALUE ...]",
                            description="Train the base config (--config, with any --group.field flags) over the "
                                        "search space (--space: config keys with {low, high[, log, step]} ranges or "
                                        "lists of choices); every trial is a run folder under "
                                        "<output_dir>/<study>/trial-NNN. The study is stored (SQLite beside the "
                                        "trials by default): the same command again resumes it or joins it.")
    _add_group_flags(search, "search", {"space": None, "trials": None, "timeout": None, "workers": None,
                                        "backend": ["optuna", "ray"], "sampler": ["tpe", "random", "grid"],
                                        "pruner": ["median", "hyperband", "none"], "storage": None,
                                        "study_name": None})
    _add_config_fields(search, groups=_run_groups())
    search.set_defaults(func=cmd_search)

    cont = sub.add_parser("continual", allow_abbrev=False, help="learn a sequence of tasks or domains, one after another",
                          usage="%(prog)s --sequence SEQUENCE.yaml [--strategy S] [--group.field VALUE ...] | "
                                "--resume RUN_DIR",
                          description="Train the steps of a sequence file in order, each an ordinary run under "
                                      "<output_dir>/<name>/steps/, score every step's test set after each step "
                                      "(the accuracy matrix, backward and forward transfer) and write the report. "
                                      "The same folder resumes with --resume.")
    cont.add_argument("--sequence", help="YAML: steps (name, train, validation, test, columns), optional config")
    cont.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted continual run")
    cont.add_argument("--quiet", action="store_true", help="only the report")
    _add_group_flags(cont, "continual", {"strategy": ["sequential", "replay", "ewc", "adapter-per-task",
                                                      "multitask"]})
    _add_config_fields(cont, groups=_run_groups())
    cont.set_defaults(func=cmd_continual)

    act = sub.add_parser("active", allow_abbrev=False, help="active learning: which pool rows to label next",
                         usage="%(prog)s --pool FILE [--labeled FILE] [--strategy S] [--batch N] [--output-dir DIR] "
                               "[--simulate --rounds N --eval FILE] [--group.field VALUE ...]",
                         description="Train an ordinary run on the labeled rows, score the pool rows not yet "
                                     "labeled, and write the next batch to label as <output-dir>/round-NNN/"
                                     "to_label.csv. Fill in its label column (a half-filled file is fine) and run "
                                     "the same command again for the next round. Without labels the first batch "
                                     "is a diverse spread of the pool (k-means over the base model's embeddings).")
    act.add_argument("--pool", required=True, help="unlabeled rows to choose from (csv, tsv, jsonl, parquet)")
    act.add_argument("--labeled", help="rows labeled already (same columns, with labels); none or empty: cold start")
    act.add_argument("--strategy", default="breaking-ties", choices=["breaking-ties", "entropy", "random"],
                     help="breaking-ties: smallest margin between the two likeliest labels (default); entropy; "
                          "random (seeded by --seed)")
    act.add_argument("--batch", type=int, default=100, help="rows to ask for per round (default 100)")
    act.add_argument("--output-dir", dest="active_dir",
                     help="folder of the rounds and active.json (default runs/active-<pool name>)")
    act.add_argument("--simulate", action="store_true",
                     help="the pool has gold labels: label each batch from them, for --rounds rounds")
    act.add_argument("--rounds", type=int, default=1, help="with --simulate: runs to train (default 1)")
    act.add_argument("--eval", dest="eval_file", help="labeled file each round's run is scored on (accuracy)")
    act.add_argument("--config", help="YAML config of the runs (groups: model, data, method, train, eval)")
    for flag in ("task", "model", "method", "text_column", "text_pair_column", "label_column", "epochs",
                 "max_length", "seed", "class_weights"):
        act.add_argument(f"--{flag.replace('_', '-')}", dest=flag, help=f"= --{_flag(SHORTHANDS[flag])}")
    _add_config_fields(act, groups=_run_groups())
    act.set_defaults(func=cmd_active)

    runs = sub.add_parser("runs", allow_abbrev=False, help="list the runs under a folder, or compare runs",
                          epilog="Keys (--sort, --filter) are columns (name, task, method, model, status, "
                                 "metric, time), metrics (accuracy, test.f1, ...) or config keys "
                                 "(train.learning_rate, method.name, ...).")
    runs.add_argument("dir", nargs="?", default="runs",
                      help="folder of run folders, searched at any depth (default: runs)")
    runs.add_argument("--sort", metavar="KEY", help="sort by KEY; -KEY for descending (e.g. -accuracy)")
    runs.add_argument("--filter", metavar="EXPR", action="append", default=[],
                      help="keep runs where EXPR holds: KEY=VALUE, != > >= < <=, or KEY~TEXT "
                           "(e.g. status=finished, method.name=lora, accuracy>0.9); repeatable")
    runs.add_argument("--json", action="store_true", help="one JSON object per run")
    runs.add_argument("--compare", nargs="+", metavar="RUN",
                      help="runs (names as listed, or folders) side by side: config differences, metric "
                           "deltas against the first, per class")
    runs.set_defaults(func=cmd_runs)

    ui = sub.add_parser("ui", allow_abbrev=False, help="a local web dashboard over the runs folder",
                        description="Runs, comparisons, learning curves (live while training), the validation "
                                    "examples a run gets wrong, and a form to try a run. Read-only.")
    ui.add_argument("--runs", default="runs", help="folder of run folders (default: runs)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=8000)
    ui.add_argument("--api-key-file", help="require this file's key (X-API-Key header, or open ?key=KEY once)")
    ui.set_defaults(func=cmd_ui)

    data = sub.add_parser("data", help="data tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", allow_abbrev=False, help="list data problems before training",
                                usage=usage)
    _add_data_flags(check)
    _add_config_fields(check)
    check.set_defaults(func=cmd_data_check)
    for command in (*sub.choices.values(), check):
        command.set_defaults(command_parser=command)
    return parser


def _assign_positionals(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """predict/explain/generate: the run folder, then the inputs. argparse stops filling a positional
    list at the first option, so inputs after options arrive as leftovers; with --model there is
    no run folder and every positional is an input. Returns the leftovers that are options."""
    field = "prompts" if args.command == "generate" else "texts"
    positionals = [p for p in (args.run, *getattr(args, field)) if p is not None]
    positionals += [e for e in extra if not e.startswith("--")]
    if getattr(args, "model", None):
        args.run = None
    else:
        args.run, positionals = (positionals[0], positionals[1:]) if positionals else (None, [])
    setattr(args, field, positionals)
    return [e for e in extra if e.startswith("--")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args, extra = parser.parse_known_args(_normalized(sys.argv[1:] if argv is None else argv))
    if args.command in ("predict", "explain", "generate"):
        extra = _assign_positionals(args, extra)
    from .data.records import DataError
    from .models import ModelNotFoundError

    try:
        if extra:
            raise _unknown(extra, args.command_parser,
                           args.func in (cmd_train, cmd_data_check, cmd_config, cmd_search, cmd_active))
        return args.func(args, extra)
    except (ConfigError, DataError, ModelNotFoundError, FileNotFoundError, ValueError) as exc:
        print(f"lmtune: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
