"""Bad input as a newcomer gives it: each case is one message that names the file, line, field
or flag, says what to do, never a traceback, and nothing is dropped without being counted."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import lmtune
from lmtune.cli import main
from lmtune.config import Config, ConfigError, validate
from lmtune.data import read_table
from lmtune.data.records import DataError
from lmtune.pipeline import encode_splits, finetune, prepare_data
from lmtune.tasks import get_task
from lmtune.training.callbacks import Callback
from conftest import ner_sentence, qa_questions, squad_file, tiny_config, toy_rows, write_conll, write_csv


def _train(tiny_model: Path, train: Path, out: Path, *flags: str) -> list[str]:
    """`lmtune train` on the tiny model, quick settings first; later flags override them."""
    return ["train", "--model", str(tiny_model), "--train", str(train), "--output-dir", str(out),
            "--run-name", "run", "--max-length", "32", "--train.progress", "false", "--epochs", "1",
            "--train.num-threads", "1", *flags]


def _fails(argv: list[str], capsys) -> str:
    """Run the CLI; it must exit 2 with one `lmtune: error:` message and no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmtune: error:") and "Traceback" not in err
    return err


@pytest.fixture
def csv36(tmp_path) -> dict[str, Path]:
    """A newcomer's 36-row CSV, split 28 / 8."""
    rows = toy_rows(36, seed=1)
    return {"train": write_csv(tmp_path / "train.csv", rows[:28]),
            "dev": write_csv(tmp_path / "dev.csv", rows[28:])}


# ---- 1. numeric config fields, before anything loads ------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--train.epochs must be > 0 (or give --train.max-steps), got 0.0"),
    (["--train.learning-rate", "-1"], "--train.learning-rate must be > 0, got -1.0"),
    (["--train.learning-rate", "0"], "--train.learning-rate must be > 0, got 0.0"),
    (["--train.batch-size", "0"], "--train.batch-size must be >= 1, got 0"),
    (["--train.grad-accum", "0"], "--train.grad-accum must be >= 1, got 0"),
    (["--train.warmup-ratio", "1"], "--train.warmup-ratio must be in [0, 1), got 1.0"),
    (["--train.weight-decay", "-0.1"], "--train.weight-decay must be >= 0, got -0.1"),
    (["--train.max-steps", "-5"], "--train.max-steps must be >= 0 (0: train for --train.epochs), got -5"),
    (["--train.eval-steps", "0"], "--train.eval-steps must be >= 1, got 0"),
    (["--train.label-smoothing", "1.0"], "--train.label-smoothing must be in [0, 1), got 1.0"),
    (["--train.logging-steps", "0"], "--train.logging-steps must be >= 1, got 0"),
    (["--max-length", "2"], "--model.max-length must be between 8 and 1048576, got 2"),
    (["--eval.threshold", "1"], "--eval.threshold must be in (0, 1), got 1.0"),
    (["--lora.r", "0"], "--lora.r must be > 0, got 0"),
    (["--lora.dropout", "1"], "--lora.dropout must be in [0, 1), got 1.0"),
    (["--prompt.num-virtual-tokens", "0"], "--prompt.num-virtual-tokens must be >= 1, got 0"),
    (["--generation.top-p", "0"], "--generation.top-p must be in (0, 1], got 0.0"),
    (["--generation.temperature", "-1"], "--generation.temperature must be >= 0 (0: greedy), got -1.0"),
    (["--train.epochs", "nan"], "--train.epochs must be > 0 (or give --train.max-steps), got nan"),
    (["--data.window-overlap", "64"], "--data.window-overlap must be < --model.max-length (32), got 64"),
    (["--data.format", "txt"], "data.format='txt': choose one of auto, csv, tsv, jsonl, parquet, conll, squad"),
])
def test_numeric_fields_fail_before_the_model_loads(flags, message, tmp_path, csv36, capsys):
    out = tmp_path / "runs"
    # A model folder that does not exist: the config error must come before anything loads.
    argv = _train(tmp_path / "no-model-here", csv36["train"], out, *flags)
    assert message in _fails(argv, capsys)
    assert not out.exists()  # no run folder, not even an empty one


def test_max_steps_allows_zero_epochs():
    cfg = Config()
    cfg.data.train, cfg.train.epochs, cfg.train.max_steps = "x.csv", 0, 10
    validate(cfg)  # max_steps decides the length; epochs are not read
    cfg.train.max_steps = 0
    with pytest.raises(ConfigError, match=r"--train\.epochs must be > 0"):
        validate(cfg)


class _FailAt(Callback):
    """Stops training with an error at a given step, as a crash would."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, row, loop_state):
        if row["step"] >= self.step:
            raise RuntimeError(f"boom at step {row['step']}")


def test_run_failing_before_any_checkpoint_leaves_no_folder(tiny_model, toy_data, tmp_path):
    cfg = tiny_config(tiny_model, toy_data, tmp_path / "runs")
    with pytest.raises(RuntimeError, match="boom at step 1"):
        finetune(cfg, callbacks=[_FailAt(1)], quiet=True)
    assert not (tmp_path / "runs" / "run").exists()  # nothing that looks like a run is left


def test_failed_run_says_no_model_and_resumes_from_another_directory(tiny_model, tmp_path, monkeypatch):
    # Data given by relative paths, from the folder the run is started in.
    data_dir = tmp_path / "project"
    data_dir.mkdir()
    rows = toy_rows(120, seed=3)
    write_csv(data_dir / "train.csv", rows[:100])
    write_csv(data_dir / "dev.csv", rows[100:])
    monkeypatch.chdir(data_dir)
    cfg = tiny_config(tiny_model, {"train": Path("train.csv"), "validation": Path("dev.csv")},
                      Path("runs"), epochs=2, eval_strategy="steps", eval_steps=4, save_steps=2)
    with pytest.raises(RuntimeError, match="boom"):
        finetune(cfg, callbacks=[_FailAt(5)], quiet=True)
    run_dir = data_dir / "runs" / "run"
    assert (run_dir / "checkpoints" / "latest.txt").is_file()  # kept: it can be resumed
    with pytest.raises(FileNotFoundError, match="the run has no saved model yet"):
        lmtune.load(run_dir)
    saved = (run_dir / "config.yaml").read_text()
    assert f"train: {data_dir / 'train.csv'}" in saved and f"validation: {data_dir / 'dev.csv'}" in saved

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--resume", str(run_dir)]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["steps"] == 14  # 2 epochs x ceil(100 / 16), all of them
    assert lmtune.load(run_dir).predict(["good"])[0]["label"] in ("pos", "neg")


# ---- 2. files with no rows, and skipping that leaves none ------------------------------------
@pytest.mark.parametrize("split", ["train", "validation", "test"])
@pytest.mark.parametrize("content, detail", [
    ("text,label\n", "it has only a header: text, label"),
    ("", "it is empty"),
])
def test_file_with_no_rows_is_said_before_training(split, content, detail, tiny_model, tmp_path, csv36, capsys):
    empty = tmp_path / f"empty-{split}.csv"
    empty.write_text(content)
    files = {"train": csv36["train"], "validation": csv36["dev"], "test": None, split: empty}
    argv = _train(tiny_model, files["train"], tmp_path / "runs", "--validation", str(files["validation"]))
    argv += ["--test", str(files["test"])] if files["test"] else []
    err = _fails(argv, capsys)
    assert f"{empty}: file has no rows ({detail}; add examples, or leave the file out)" in err
    assert not (tmp_path / "runs").exists()


def test_skipping_every_row_is_said_before_training(tiny_model, tmp_path, csv36, capsys):
    dev = tmp_path / "bad-dev.csv"
    dev.write_text("text,label\n,pos\n  ,neg\ngood film,pos,extra\n")
    argv = _train(tiny_model, csv36["train"], tmp_path / "runs", "--validation", str(dev),
                  "--data.on-error", "skip")
    err = _fails(argv, capsys)
    assert (f"{dev}: all 3 rows were skipped (errors: 2 'empty text', 1 'expected 2 fields'; first at "
            f"{dev}:2); nothing is left to evaluate on") in err
    assert not (tmp_path / "runs").exists()


# ---- 3. a wrong column name: one error with the columns and the closest one -------------------
def test_wrong_text_column_is_one_error_with_columns_and_closest_match(tiny_model, tmp_path, csv36, capsys):
    argv = _train(tiny_model, csv36["train"], tmp_path / "runs", "--validation", str(csv36["dev"]),
                  "--text-column", "txt")
    err = _fails(argv, capsys)
    assert (f"{csv36['train']}: no column 'txt' (columns: text, label); did you mean 'text'? "
            "Set --text-column text") in err
    assert f"{csv36['dev']}: no column 'txt'" in err
    assert len(err.strip().splitlines()) == 3  # a headline and one line per file, not one per row


@pytest.mark.parametrize("flag, column, message", [
    ("--label-column", "sentiment", "no column 'sentiment' (columns: text, label); "
                                    "set --label-column to the column that holds it"),
    ("--text-pair-column", "hypothesis", "no column 'hypothesis' (columns: text, label); "
                                         "set --text-pair-column to the column that holds it"),
])
def test_other_wrong_columns_name_their_flag(flag, column, message, tiny_model, tmp_path, csv36, capsys):
    err = _fails(_train(tiny_model, csv36["train"], tmp_path / "runs", flag, column), capsys)
    assert f"{csv36['train']}: {message}" in err
    assert "found 0 distinct label" not in err


def test_generation_columns_name_the_data_flags(tmp_path):
    train = tmp_path / "chat.jsonl"
    train.write_text('{"question": "where ?", "answer": "paris"}\n' * 3)
    cfg = Config()
    cfg.task, cfg.data.train = "generation", str(train)
    with pytest.raises(DataError) as info:
        prepare_data(cfg, get_task(cfg))
    assert (f"{train}: no column 'prompt' (columns: question, answer); "
            "set --data.prompt-column to the column that holds it") in str(info.value)
    assert f"{train}: no column 'response'" in str(info.value)


def test_fixed_field_names_say_rename_not_a_flag(tmp_path):
    train = tmp_path / "qa.jsonl"
    train.write_text('{"Question": "who ?", "text": "alice met bob", "answers": []}\n')
    cfg = _qa_config()
    cfg.data.train = str(train)
    with pytest.raises(DataError) as info:
        prepare_data(cfg, get_task(cfg))
    message = str(info.value)
    assert f"{train}: no column 'question' (columns: Question, text, answers); did you mean 'Question'? " \
           "Rename it to 'question'" in message
    # 'text' is not offered for 'context': too far to be a misspelling
    assert (f"{train}: no column 'context' (columns: Question, text, answers); "
            "name the column 'context'") in message


def test_field_missing_in_only_some_jsonl_rows_is_reported_per_row(tmp_path):
    train = tmp_path / "train.jsonl"
    rows = [{"text": "good", "label": "pos"}, {"review": "bad", "label": "neg"},
            {"text": "dull", "label": "neg"}]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = Config()
    cfg.data.train = str(train)
    with pytest.raises(DataError) as info:
        prepare_data(cfg, get_task(cfg))
    assert f"{train}:2: field 'text': missing text (no such field)" in str(info.value)
    assert "1 data problem(s)" in str(info.value)


# ---- 4. a folder, or a near miss, given as a data file ---------------------------------------
def test_directory_given_as_data_file(tiny_model, tmp_path, csv36, capsys):
    err = _fails(_train(tiny_model, tmp_path, tmp_path / "runs"), capsys)
    assert (f"{tmp_path}: is a directory, not a data file "
            "(give the path of one file in it: dev.csv, train.csv)") in err
    assert "not found" not in err


def test_missing_file_suggests_a_close_name(tiny_model, tmp_path, csv36, capsys):
    err = _fails(_train(tiny_model, tmp_path / "trian.csv", tmp_path / "runs"), capsys)
    assert f"{tmp_path / 'trian.csv'}: data file not found; did you mean {csv36['train']}?" in err
    err = _fails(_train(tiny_model, tmp_path / "nope" / "train.csv", tmp_path / "runs"), capsys)
    missing = tmp_path / "nope" / "train.csv"
    assert f"{missing}: data file not found (there is no folder {missing.parent})" in err


# ---- 5. a task's usual layout under an extension that says nothing --------------------------
@pytest.fixture
def conll_txt(tmp_path) -> dict[str, Path]:
    """CoNLL-2003 as distributed: train.txt / valid.txt, space-separated columns."""
    rng = random.Random(7)
    sentences = [ner_sentence(rng) for _ in range(40)]
    return {"train": write_conll(tmp_path / "train.txt", sentences[:30], sep=" "),
            "validation": write_conll(tmp_path / "valid.txt", sentences[30:], sep=" "),
            "sentences": sentences}


def test_conll_txt_is_read_by_content_and_said(conll_txt, tiny_model, capsys):
    cfg = Config()
    cfg.task, cfg.data.train, cfg.data.validation = "ner", str(conll_txt["train"]), str(conll_txt["validation"])
    splits, report, _ = prepare_data(cfg, get_task(cfg))
    assert len(splits["train"].records) == 30 and len(splits["validation"].records) == 10
    assert [r.fields["tokens"] for r in splits["train"].records] == [w for w, _ in conll_txt["sentences"][:30]]
    assert report["train"]["format"] == "conll"
    assert splits["train"].notes == [f"{conll_txt['train']}: read as CoNLL columns (token ... tag), "
                                     "from its content; --data.format overrides"]
    code = main(["data", "check", "--task", "ner", "--model", str(tiny_model),
                 "--train", str(conll_txt["train"])])
    out = capsys.readouterr().out
    assert code == 0 and f"{conll_txt['train']}: read as CoNLL columns (token ... tag)" in out


def test_unknown_extension_without_a_usual_layout_names_data_format(conll_txt, tiny_model, tmp_path, capsys):
    err = _fails(_train(tiny_model, conll_txt["train"], tmp_path / "runs"), capsys)  # classification
    assert f"{conll_txt['train']}: cannot tell the format from the extension '.txt'; set --data.format" in err
    prose = tmp_path / "notes.txt"
    prose.write_text("this is just some text\nnot tagged at all\n")
    err = _fails(_train(tiny_model, prose, tmp_path / "runs", "--task", "ner"), capsys)
    assert (f"{prose}: cannot tell the format from the extension '.txt' and the content does not look "
            "like CoNLL columns (token ... tag); set --data.format") in err


def test_data_format_overrides_the_extension(tmp_path):
    path = write_csv(tmp_path / "reviews.data", [("good", "pos"), ("bad", "neg")])
    dataset = read_table(path, "csv")
    assert [r.fields["text"] for r in dataset.records] == ["good", "bad"] and dataset.notes == []
    tsv = write_csv(tmp_path / "reviews.csv", [("good", "pos"), ("bad", "neg")], delimiter="\t")
    assert read_table(tsv, "tsv").columns == ["text", "label"]
    with pytest.raises(ValueError, match="not SQuAD JSON"):
        read_table(path, "squad")


def test_squad_json_under_another_extension_for_qa(tmp_path):
    path = squad_file(tmp_path / "dev.txt", qa_questions(2))
    dataset = read_table(path, "auto", get_task(_qa_config()).default_format)
    assert len(dataset.records) == 6 and dataset.format == "squad"
    assert dataset.notes == [f"{path}: read as SQuAD JSON, from its content; --data.format overrides"]


def _qa_config() -> Config:
    cfg = Config()
    cfg.task = "qa"
    return cfg


# ---- 6. NER: a bad tag inside a sentence -------------------------------------------------------
def _bad_conll(tmp_path: Path) -> tuple[Path, int, list]:
    """Sentence 4 has the bad tag X-LOC on its second token; returns the file and that line."""
    rng = random.Random(5)
    sentences = [ner_sentence(rng) for _ in range(12)]
    words, tags = sentences[3]
    sentences[3] = (words, [tags[0], "X-LOC", *tags[2:]])
    path = write_conll(tmp_path / "train.conll", sentences)
    line = 3 + sum(len(w) + 1 for w, _ in sentences[:3]) + 1  # DOCSTART, blank, then sentences
    assert path.read_text().splitlines()[line - 1].endswith("\tX-LOC")
    return path, line, sentences


def test_skip_drops_the_whole_sentence_a_bad_tag_is_in(tmp_path, tiny_model):
    path, line, sentences = _bad_conll(tmp_path)
    cfg = Config()
    cfg.task, cfg.data.train, cfg.data.on_error = "ner", str(path), "skip"
    task = get_task(cfg)
    splits, report, issues = prepare_data(cfg, task)
    assert [str(i) for i in issues if i.level == "error"] == [
        f"{path}:{line}: field 'tag': unknown tag 'X-LOC' (use O, B-x, I-x (or S-x, E-x))"]
    kept = [r.fields["tokens"] for r in splits["train"].records]
    assert kept == [w for i, (w, _) in enumerate(sentences) if i != 3]
    assert report["train"]["rows_skipped"] == 1 and report["train"]["rows_used"] == 11
    assert "LOC" not in " ".join(task.labels)  # a bad tag is not an entity type
    from transformers import AutoTokenizer

    encode_splits(cfg, task, AutoTokenizer.from_pretrained(str(tiny_model)), splits, report, quiet=True)


def test_tagless_token_inside_a_sentence_drops_it_whole(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("alice\tB-person\nmet\tO\nbob\n\nrome\tB-location\nwas\tO\ngood\tO\n\ncarol\tB-person\n")
    cfg = Config()
    cfg.task, cfg.data.train, cfg.data.on_error = "ner", str(path), "skip"
    splits, report, _ = prepare_data(cfg, get_task(cfg))
    assert [r.fields["tokens"] for r in splits["train"].records] == [["rome", "was", "good"], ["carol"]]
    assert report["train"]["rows_skipped"] == 1  # the sentence, not a shorter one kept silently


def test_data_check_reports_a_bad_tag_inside_a_sentence(tmp_path, tiny_model, capsys):
    path, line, _ = _bad_conll(tmp_path)
    code = main(["data", "check", "--task", "ner", "--model", str(tiny_model), "--train", str(path)])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert f"ERROR   {path}:{line}: field 'tag': unknown tag 'X-LOC'" in captured.out
    assert "1 error(s), 0 warning(s)" in captured.out


def test_training_with_a_bad_tag_names_its_line(tmp_path, tiny_model, capsys):
    path, line, _ = _bad_conll(tmp_path)
    err = _fails(_train(tiny_model, path, tmp_path / "runs", "--task", "ner"), capsys)
    assert f"{path}:{line}: field 'tag': unknown tag 'X-LOC'" in err
    assert "--data.on-error skip" in err


# ---- 8. evaluate: the file's own column names, and skipping ----------------------------------
@pytest.fixture(scope="module")
def trained_run(tiny_model, toy_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval-runs")
    return finetune(tiny_config(tiny_model, toy_data, out, epochs=1), quiet=True).root


def test_evaluate_reads_other_column_names(trained_run, tmp_path, capsys):
    rows = toy_rows(20, seed=9)
    path = write_csv(tmp_path / "reviews.csv", rows, header=("review", "sentiment"))
    err = _fails(["evaluate", str(trained_run), "--data", str(path)], capsys)
    assert f"{path}: no column 'text' (columns: review, sentiment); set --text-column" in err
    assert f"{path}: no column 'label' (columns: review, sentiment); set --label-column" in err
    assert main(["evaluate", str(trained_run), "--data", str(path), "--text-column", "review",
                 "--label-column", "sentiment"]) == 0
    assert "accuracy" in capsys.readouterr().out
    metrics = lmtune.evaluate(trained_run, path, quiet=True, text_column="review", label_column="sentiment")
    assert metrics["support"] == 20  # every row scored
    as_txt = write_csv(tmp_path / "reviews.txt", rows)
    err = _fails(["evaluate", str(trained_run), "--data", str(as_txt)], capsys)
    assert f"{as_txt}: cannot tell the format from the extension '.txt'; set --data.format" in err
    assert main(["evaluate", str(trained_run), "--data", str(as_txt), "--data.format", "csv"]) == 0
    assert lmtune.evaluate(trained_run, as_txt, quiet=True, data_format="csv")["support"] == 20


def test_evaluate_skips_bad_rows_when_asked_and_counts_them(trained_run, tmp_path, capsys):
    path = tmp_path / "dev.csv"
    path.write_text("text,label\ngood film,pos\n,neg\nawful plot,\nthe film was dull,neg\n")
    err = _fails(["evaluate", str(trained_run), "--data", str(path)], capsys)
    assert f"{path}:3: field 'text': empty text" in err and f"{path}:4: field 'label': empty label" in err
    assert "pass --data.on-error skip" in err
    assert main(["evaluate", str(trained_run), "--data", str(path), "--data.on-error", "skip"]) == 0
    assert f"{path}: skipped 2 row(s) with errors; scoring the other 2" in capsys.readouterr().out
    metrics = lmtune.evaluate(trained_run, path, quiet=True, on_error="skip")
    assert metrics["support"] == 2
    err = _fails(["evaluate", str(trained_run), "--data", str(path), "--text-pair-column", "x"], capsys)
    assert "this model reads single texts; --text-pair-column does not apply to it" in err


def test_predict_input_with_a_wrong_column_lists_the_columns(trained_run, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text('{"review": "good"}\n{"review": "bad"}\n')
    err = _fails(["predict", str(trained_run), "--input", str(path)], capsys)
    assert f"{path}: no column 'text' (columns: review); name the column 'text'" in err
    assert len(err.strip().splitlines()) == 2  # the message and what the model reads, not one per row
