"""--method few-shot: a sentence-embedding classifier that starts as the zero-shot classifier,
trains in the one loop, and saves, reloads, serves and exports like any run."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import lmtune
from lmtune.config import Config, ConfigError
from lmtune.evaluation.calibration import read_temperature
from lmtune.pipeline import finetune
from conftest import tiny_config

TEXTS = ["a great and lovely film", "a dull , boring mess", "alice visited paris"]


def few_shot_config(tiny_model, data, out, **train) -> Config:
    cfg = tiny_config(tiny_model, data, out, **train)
    cfg.method.name = "few-shot"
    cfg.few_shot.labels, cfg.few_shot.description = "neg=bad,pos=good", "a {label} film"
    return cfg


@pytest.fixture(scope="module")
def few_shot_run(tiny_model, toy_data, tmp_path_factory):
    cfg = few_shot_config(tiny_model, toy_data, tmp_path_factory.mktemp("few-shot"), epochs=4)
    return finetune(cfg, quiet=True)


def test_before_training_the_model_is_the_zero_shot_classifier(tiny_model):
    """The prototypes start as the label descriptions' embeddings: logits = the zero-shot
    encoder scorer's scores (cosine x 20)."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    from lmtune.methods.few_shot import FewShotMethod
    from lmtune.models import load_tokenizer
    from lmtune.prompting import EncoderSimilarity, LabelSet

    cfg = Config()
    cfg.few_shot.labels, cfg.few_shot.description = "neg=bad,pos=good", "a {label} film"
    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_model), num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    classifier = FewShotMethod(cfg).prepare(model).eval()
    tokenizer = load_tokenizer(tiny_model)
    with torch.no_grad():
        logits = classifier(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    scorer = EncoderSimilarity(AutoModel.from_pretrained(str(tiny_model)), tokenizer,
                               LabelSet.parse("neg=bad,pos=good"), description="a {label} film")
    np.testing.assert_allclose(logits, scorer.scores(TEXTS), atol=1e-4)
    assert not classifier.encoder.pooler.dense.weight.requires_grad  # unused by mean pooling


def test_the_run_learns_and_reloads_with_plain_transformers(few_shot_run, toy_data):
    """The encoder loads with AutoModel; its mean-pooled embeddings and the saved head give the
    logits lmtune.load gives; sentence-transformers' layout files are there."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    metrics = json.loads(few_shot_run.metrics.read_text())
    assert metrics["validation"]["accuracy"] >= 0.9
    folder = few_shot_run.model
    encoder, tokenizer = AutoModel.from_pretrained(str(folder)).eval(), AutoTokenizer.from_pretrained(str(folder))
    head = load_file(str(folder / "few_shot_head.safetensors"))
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    by_hand = pooled @ head["prototypes"].T + head["bias"]  # the refit head: linear (--few-shot.head logistic)
    predictions = lmtune.load(few_shot_run.root).predict(TEXTS)
    labels = [encoder.config.id2label[int(i)] for i in by_hand.argmax(1)]
    assert [p["label"] for p in predictions] == labels
    # Probabilities use the run's fitted temperature (calibration.json), whatever it came to on
    # this machine's precision: the test must not depend on what `auto` resolves to.
    temperature = read_temperature(few_shot_run.root) or 1.0
    probabilities = torch.softmax(by_hand / temperature, 1).numpy()
    assert [p["score"] for p in predictions] == pytest.approx(probabilities.max(1).tolist(), abs=1e-5)
    assert json.loads((folder / "modules.json").read_text())[1]["path"] == "1_Pooling"
    assert f"AutoModel.from_pretrained({str(folder)!r})" in few_shot_run.card.read_text()
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]


def test_the_head_is_a_logistic_regression_on_the_tuned_embeddings(few_shot_run, toy_data):
    """After training the head is refit as SetFit's: scikit-learn's LogisticRegression on the
    saved encoder's embeddings of the training rows gives the saved head's logits."""
    import csv

    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    from lmtune.forward import mean_pooled

    folder = few_shot_run.model
    encoder, tokenizer = AutoModel.from_pretrained(str(folder)).eval(), AutoTokenizer.from_pretrained(str(folder))
    rows = list(csv.DictReader(open(toy_data["train"])))

    def embed(texts):
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            return mean_pooled(encoder(**batch).last_hidden_state, batch["attention_mask"]).double().numpy()

    fit = LogisticRegression(max_iter=1000).fit(embed([r["text"] for r in rows]), [r["label"] == "pos" for r in rows])
    head = lmtune.load(few_shot_run.root).model
    with torch.no_grad():
        logits = head.score(torch.from_numpy(embed(TEXTS)).float()).numpy()
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], fit.decision_function(embed(TEXTS)), atol=1e-4)
    assert "refit by logistic regression on the 200 training" in json.loads(few_shot_run.metrics.read_text())["training"]["refit"]


def test_the_trained_prototypes_can_be_kept(tiny_model, toy_data, tmp_path):
    """--few-shot.head prototypes: no refit; the saved head is the cosine head trained with the encoder."""
    from safetensors import safe_open

    cfg = few_shot_config(tiny_model, toy_data, tmp_path, max_steps=2)
    cfg.few_shot.head = "prototypes"
    run = finetune(cfg, quiet=True)
    with safe_open(str(run.model / "few_shot_head.safetensors"), framework="pt") as handle:
        assert handle.metadata()["head"] == "cosine"
    assert "refit" not in json.loads(run.metrics.read_text())["training"]
    cfg.few_shot.head = "ridge"
    with pytest.raises(ConfigError, match="--few-shot.head 'ridge': choose one of logistic, prototypes"):
        finetune(cfg, quiet=True)


def test_a_logistic_head_needs_every_case_in_the_examples():
    from lmtune.methods.few_shot import logistic_head

    x = torch.randn(6, 4)
    always = torch.tensor([[1.0, 0.0], [1.0, 1.0]] * 3)
    assert "'tone' are on every training example" in logistic_head(x, always, ["tone", "pos"], multi_label=True)
    assert "'c' have no training example" in logistic_head(x, torch.tensor([0, 1] * 3), ["a", "b", "c"], False)
    weight, bias = logistic_head(x, torch.tensor([0, 1, 2] * 2), ["a", "b", "c"], False)
    assert weight.shape == (3, 4) and bias.shape == (3,)


def test_the_run_serves_and_exports_to_onnx(few_shot_run, toy_data):
    from fastapi.testclient import TestClient

    from lmtune.export.onnx import export_onnx
    from lmtune.serving import create_app

    expected = [p["label"] for p in lmtune.load(few_shot_run.root).predict(TEXTS)]
    with TestClient(create_app({"sentiment": lmtune.load(few_shot_run.root)})) as client:
        answer = client.post("/v1/models/sentiment/predict", json={"inputs": TEXTS})
    assert answer.status_code == 200
    assert [p["label"] for p in answer.json()["predictions"]] == expected
    report = export_onnx(few_shot_run.root, data=toy_data["validation"], quiet=True)
    fp32 = report["variants"]["fp32"]
    assert fp32["max_abs_logit_diff"] < 1e-4 and fp32["agreement"] == 1.0
    onnx = lmtune.load(few_shot_run.root, backend="onnx").predict(TEXTS)
    assert [p["label"] for p in onnx] == expected


def test_multi_label_few_shot_reports_per_label_f1(tiny_model, tmp_path):
    from conftest import toy_rows, write_csv

    rows = [(text, "|".join(["tone", label] if i % 4 else [label])) for i, (text, label) in enumerate(toy_rows(120, 3))]
    data = {"train": write_csv(tmp_path / "train.csv", rows[:100]), "validation": write_csv(tmp_path / "dev.csv", rows[100:])}
    cfg = few_shot_config(tiny_model, data, tmp_path / "runs", epochs=20, metric_for_best="micro_f1")
    cfg.few_shot.labels = None
    cfg.data.multi_label, cfg.data.label_separator = True, "|"
    metrics = json.loads(finetune(cfg, quiet=True).metrics.read_text())
    assert set(metrics["validation_report"]["per_class"]) == {"neg", "pos", "tone"}
    assert metrics["validation_report"]["per_class"]["pos"]["f1"] > 0.8
    assert "refit by logistic regression" in metrics["training"]["refit"]  # one regression per label


@pytest.mark.parametrize("labels, description, message", [
    ("neg=bad,xyz=good", "a {label} film", "gives no word for the training label(s) 'pos'"),
    ("neg=bad", "a {label} film", "--few-shot.labels 'neg=bad': give at least two labels"),
    ("neg=bad,pos=good", "a film", "must contain {label}"),
])
def test_label_words_and_descriptions_are_checked(labels, description, message, tiny_model, toy_data, tmp_path):
    cfg = few_shot_config(tiny_model, toy_data, tmp_path, max_steps=1)
    cfg.few_shot.labels, cfg.few_shot.description = labels, description
    with pytest.raises(ConfigError, match=re.escape(message)):
        finetune(cfg, quiet=True)
    assert not (tmp_path / "run").exists()


def test_a_decoder_starts_as_label_word_scoring_and_trains(tiny_llama, toy_data, tmp_path):
    """With a decoder the head is the label words' output rows: its logits on the templated
    input are the causal LM's next-token logits for those words. The run then trains, and
    reloads as a plain sequence classifier with the scores it was evaluated with."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from lmtune.methods.few_shot import FewShotMethod
    from lmtune.models import load_model, load_tokenizer

    cfg = few_shot_config(tiny_llama, toy_data, tmp_path, epochs=3)
    cfg.few_shot.labels, cfg.data.template = "neg=negative,pos=positive", "review : {text} answer :"
    model, new = load_model(tiny_llama, AutoModelForSequenceClassification, num_labels=2,
                            id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    classifier = FewShotMethod(cfg).prepare(model, new_weights=new).eval()
    tokenizer = load_tokenizer(tiny_llama)
    ids = tokenizer(["review : a great film answer :"], return_tensors="pt")["input_ids"]
    words = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in (" negative", " positive")]
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(str(tiny_llama))(input_ids=ids).logits[0, -1, words]
        np.testing.assert_allclose(classifier(input_ids=ids).logits[0].numpy(), expected.numpy(), atol=1e-5)

    run = finetune(cfg, quiet=True)
    recorded = json.loads(run.metrics.read_text())["validation"]
    assert recorded["accuracy"] > 0.5
    assert lmtune.evaluate(run.root, toy_data["validation"], quiet=True)["accuracy"] == recorded["accuracy"]
    plain = AutoModelForSequenceClassification.from_pretrained(str(run.model))
    assert plain.config.id2label == {0: "neg", 1: "pos"}


@pytest.mark.parametrize("template, message", [
    ("review : {txt}", "only {text} and {pair} can be filled in"),
    ("review :", "must contain {text}"),
    ("{text} and {pair}", "use {pair} exactly when --data.text-pair-column is set"),
])
def test_a_bad_template_is_refused_before_anything_loads(template, message, tiny_model, toy_data, tmp_path):
    cfg = tiny_config(tiny_model, toy_data, tmp_path, max_steps=1)
    cfg.data.template = template
    with pytest.raises(ConfigError, match=re.escape(message)):
        finetune(cfg, quiet=True)
