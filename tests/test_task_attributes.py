"""What a task accepts, shows, exports and needs from peft are Task attributes, and what a method
cannot be combined with is its own check: the layers around them ask, never match on a name."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lmtune.cli import main
from lmtune.config import Config, ConfigError, validate
from lmtune.tasks import TASKS, task_class
from conftest import make_task


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_trainable_task_names_a_peft_task_type(name):
    from peft import TaskType

    assert task_class(name).peft_task_type in {kind.value for kind in TaskType}


def test_an_adapter_wraps_the_head_as_the_task_says(tiny_model):
    from transformers import AutoModelForTokenClassification

    from lmtune.methods import get_method

    cfg = Config()
    cfg.method.name = "lora"
    model = AutoModelForTokenClassification.from_pretrained(str(tiny_model), num_labels=3)
    wrapped = get_method(cfg).prepare(model, peft_task_type=make_task("ner").peft_task_type)
    assert wrapped.peft_config["default"].task_type == "TOKEN_CLS"
    assert type(wrapped).__name__ == "PeftModelForTokenClassification"


def test_serving_accepts_the_input_kinds_a_task_declares():
    from lmtune.serving.app import Limits, _input_shape, _items

    words_only = SimpleNamespace(task="tagger", predictor=SimpleNamespace(task=SimpleNamespace(input_kinds=("words",))))
    assert _input_shape(words_only.predictor.task) == ((list,), "a list of words")
    assert _items(words_only, [["bob", "met", "carol"]], None, Limits()) == [(["bob", "met", "carol"], None)]
    with pytest.raises(ValueError, match="inputs\\[0\\]: a tagger model takes a list of words"):
        _items(words_only, ["bob met carol"], None, Limits())
    assert _input_shape(make_task("ner"))[1] == "a text or a list of words"
    assert _input_shape(make_task("qa"))[1] == "{question, context}"


def test_each_task_shows_its_predictions_on_the_terminal():
    label = {"label": "pos", "score": 0.91234, "probabilities": {}}
    assert make_task("classification").format_prediction(label, "good film") == "pos\t0.9123\tgood film\n"
    assert make_task("classification").format_prediction({"labels": ["a", "b"]}, "x") == "['a', 'b']\tx\n"
    entity = {"type": "PER", "text": "alice", "start": 0, "end": 5, "score": 0.9}
    ner = make_task("ner")
    assert ner.format_prediction({"entities": [entity]}, "alice ran") == "PER: 'alice' [0:5] 0.90\talice ran\n"
    assert ner.format_prediction({"entities": []}, "ran") == "(no entities)\tran\n"
    answers = [{"answer": "rome", "start": 3, "end": 7, "score": 0.5}, {"answer": "x", "start": 0, "end": 1,
                                                                         "score": 0.25}]
    assert make_task("qa").format_prediction(answers, "who?") == "'rome'\t[3:7]\t0.5000\n'x'\t[0:1]\t0.2500\n"
    assert make_task("qa").same_prediction(answers, answers[0]) and not make_task("qa").same_prediction(
        answers[0], answers[1])
    assert make_task("generation").format_prediction({"generated_text": "paris"}, "where?") == "paris\n"


def test_methods_check_their_own_settings():
    cfg = Config()
    cfg.task, cfg.data.train, cfg.data.packing = "generation", "t.jsonl", True
    for name in ("prefix", "prompt"):
        cfg.method.name = name
        with pytest.raises(ConfigError, match=f"data.packing cannot be used with --method {name}"):
            validate(cfg)
    cfg.method.name = "lora"
    validate(cfg)
    cfg.method.name = "lorra"
    with pytest.raises(ConfigError, match="unknown method 'lorra'; available: full, freeze, lora"):
        validate(cfg)


def test_commands_ask_the_task(tiny_model, ner_data, monkeypatch, capsys):
    assert main(["evaluate", "--model", str(tiny_model), "--task", "ner", "--data", "x.conll"]) == 2
    assert "a ner head would be untrained" in capsys.readouterr().err
    import lmtune.inference.predictor as predictor

    monkeypatch.setattr(predictor, "load", lambda run, **kw: SimpleNamespace(task=make_task("classification")))
    assert main(["generate", "runs/x", "hello"]) == 2
    assert "runs/x is a classification run; use lmtune predict" in capsys.readouterr().err
    assert main(["data", "check", "--task", "ner", "--model", str(tiny_model), "--train", str(ner_data["train"]),
                 "--max-length", "8"]) in (0, 1)
    assert "(split into windows)" in capsys.readouterr().out
