"""Explanations by integrated gradients: completeness, words lined up with their offsets, the
targets of each task, the CLI and HTML page, the server endpoint (inputs checked as predict
checks them), and the refusal of tasks that cannot be explained."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient  # the serve extra: installed by `make test`

import lmtune
from lmtune.cli import main
from lmtune.inference.explain import TOLERANCE, explain, to_html
from lmtune.pipeline import finetune
from lmtune.serving import Limits, create_app
from conftest import QA_CONTEXT, tiny_config


@pytest.fixture(scope="module")
def runs(tiny_model, toy_data, ner_data, qa_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("explained")
    folders = {}
    for task, data in (("classification", toy_data), ("ner", ner_data), ("qa", qa_data)):
        cfg = tiny_config(tiny_model, data, out, epochs=3)
        cfg.task, cfg.train.run_name = task, task
        folders[task] = finetune(cfg, quiet=True).root
    return folders


@pytest.fixture(scope="module")
def predictors(runs):
    return {name: lmtune.load(folder) for name, folder in runs.items()}


def test_attributions_add_up_to_the_score_difference(predictors):
    predictor = predictors["classification"]
    texts = ["the film was really good !", "bad plot and boring acting"]
    explanations = explain(predictor, texts)
    for explanation, prediction in zip(explanations, predictor.predict(texts)):
        (target,) = explanation.targets
        assert target.name == prediction["label"]  # the predicted class by default
        assert target.score == pytest.approx(prediction["score"], abs=1e-4)  # the probability predict gives
        delta = target.score - target.baseline_score
        assert abs(target.attribution_sum - delta) <= TOLERANCE * abs(delta)
        assert target.error <= TOLERANCE and target.converged and target.n_steps == 50
        assert sum(t.attribution for t in target.tokens) == pytest.approx(target.attribution_sum, abs=1e-6)
        specials = [t for t in target.tokens if t.token in ("[CLS]", "[SEP]")]
        assert len(specials) == 2 and all(t.attribution == 0 and t.word is None for t in specials)


def test_a_chosen_label_and_the_steps_doubling(predictors):
    predictor = predictors["classification"]
    (explanation,) = explain(predictor, "the film was good", label="neg,pos")
    assert [t.name for t in explanation.targets] == ["neg", "pos"]
    # two softmax probabilities: what raises one lowers the other by as much
    neg, pos = explanation.targets
    assert neg.attribution_sum == pytest.approx(-pos.attribution_sum, abs=1e-4)
    # tolerance 0 is never met: the steps double from 3 up to the cap, and the miss is recorded
    (strict,) = explain(predictor, "the film was good", n_steps=3, max_steps=12, tolerance=0.0)
    assert strict.targets[0].n_steps == 12 and not strict.targets[0].converged
    with pytest.raises(ValueError, match="unknown label.*'maybe'.*neg, pos"):
        explain(predictor, "the film was good", label="maybe")
    with pytest.raises(ValueError, match="positive integer"):
        explain(predictor, "the film was good", n_steps=0)


def test_word_attributions_line_up_with_the_words(predictors):
    text = "the films, so boring!"
    (explanation,) = explain(predictors["classification"], text)
    (target,) = explanation.targets
    assert explanation.segments == {"text": text}
    assert [(w.text, w.start, w.end) for w in target.words] == [
        ("the", 0, 3), ("films", 4, 9), (",", 9, 10), ("so", 11, 13), ("boring", 14, 20), ("!", 20, 21)]
    assert all(text[w.start:w.end] == w.text and w.field == "text" for w in target.words)
    pieces = [t for t in target.tokens if t.word == 1]
    assert [t.token for t in pieces] == ["film", "##s"]  # one word, two pieces, summed
    assert target.words[1].attribution == pytest.approx(sum(t.attribution for t in pieces), abs=1e-7)


def test_ner_explains_each_predicted_entity(predictors):
    predictor = predictors["ner"]
    text = "alice met bob in paris today"
    (explanation,) = explain(predictor, text)
    entities = predictor.predict(text)[0]["entities"]
    assert entities, "the tiny NER model should find entities here"
    assert [t.name for t in explanation.targets] == [
        f"{e['type']} {e['text']!r} [{e['start']}:{e['end']}]" for e in entities]
    for target, entity in zip(explanation.targets, entities):
        assert target.kind == "logit" and target.error <= TOLERANCE
        top = max(target.words, key=lambda w: abs(w.attribution))
        assert (top.start, top.end) == (entity["start"], entity["end"])  # the entity's own word leads
    (places,) = explain(predictor, text, label="location")
    assert [t.name for t in places.targets] == [t.name for t in explanation.targets if t.name.startswith("location")]
    with pytest.raises(ValueError, match="'city' is not an entity type.*location, person"):
        explain(predictor, text, label="city")


def test_qa_explains_the_answer_start_and_end(predictors):
    predictor = predictors["qa"]
    question = "who visited rome ?"
    (explanation,) = explain(predictor, [question], [QA_CONTEXT])
    answer = predictor.predict([question], [QA_CONTEXT])[0]
    shown = repr(answer["answer"]) if answer["answer"] else "(no answer)"
    assert [t.name for t in explanation.targets] == [f"answer start {shown}", f"answer end {shown}"]
    assert explanation.segments == {"question": question, "context": QA_CONTEXT}
    words = explanation.targets[0].words
    assert {w.field for w in words} == {"question", "context"}
    assert all(explanation.segments[w.field][w.start:w.end] == w.text for w in words)
    assert all(t.error <= TOLERANCE for t in explanation.targets)
    with pytest.raises(ValueError, match="no label to choose"):
        explain(predictor, [question], [QA_CONTEXT], label="x")


def test_a_generation_model_is_refused_with_the_reason(tiny_llama):
    from lmtune.config import Config
    from lmtune.inference.predictor import load_base

    cfg = Config()
    cfg.task, cfg.model.name = "generation", str(tiny_llama)
    with pytest.raises(ValueError, match="a generation model cannot be explained: integrated gradients"):
        explain(load_base(cfg, device="cpu"), ["where did alice go ?"])


def test_cli_prints_json_and_writes_an_html_page(runs, tmp_path, capsys):
    page = tmp_path / "why.html"
    assert main(["explain", str(runs["classification"]), "the film was good", "--html", str(page),
                 "--steps", "20"]) == 0
    printed = capsys.readouterr().out
    assert "20 steps, completeness error" in printed and "top words:" in printed
    assert f"wrote 1 explanation(s) to {page}" in printed
    html = page.read_text()
    assert "<script" not in html and "http" not in html and "<link" not in html
    assert html.count('style="background-color:rgb(') == 4 + 2  # four words, two legend swatches
    assert main(["explain", str(runs["classification"]), "good", "bad", "--json", "--label", "neg"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["targets"][0]["name"] for line in lines] == ["neg", "neg"]
    assert main(["explain", str(runs["qa"]), "--question", "where ?"]) == 2
    assert "needs both --question and --context" in capsys.readouterr().err


def test_html_escapes_the_text(predictors):
    page = to_html(explain(predictors["classification"], "<b>good</b> & bad"))
    assert "&lt;" in page and "&amp;" in page and "<b>good" not in page


@pytest.fixture(scope="module")
def client(predictors, tiny_llama):
    from lmtune.config import Config
    from lmtune.inference.predictor import load_base

    cfg = Config()
    cfg.task, cfg.model.name = "generation", str(tiny_llama)
    served = {**predictors, "writer": load_base(cfg, device="cpu")}
    app = create_app(served, limits=Limits(max_body_bytes=4000, max_inputs=4, max_chars=200))
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize("body", [
    {"inputs": []}, {"inputs": ["a"] * 5}, {"inputs": ["x" * 201]}, {"inputs": [3]},
    {"inputs": ["good"], "pairs": ["a", "b"]}, {"inputs": [{"question": "q", "context": "c"}]},
    {"inputs": ["  "]}, {"inputs": ["good"], "extra": 1},
])
def test_explain_checks_inputs_as_predict_does(client, body):
    explained = client.post("/v1/models/classification/explain", json=body)
    predicted = client.post("/v1/models/classification/predict", json=body)
    assert explained.status_code == predicted.status_code == 422
    assert explained.json() == predicted.json()


def test_explain_endpoint(client, predictors):
    response = client.post("/v1/models/classification/explain",
                           json={"inputs": ["the film was good"], "options": {"label": "pos", "steps": 20}})
    assert response.status_code == 200
    body = response.json()
    (explanation,) = body["explanations"]
    assert body["task"] == "classification" and explanation["targets"][0]["name"] == "pos"
    assert [w["text"] for w in explanation["targets"][0]["words"]] == ["the", "film", "was", "good"]
    qa = client.post("/v1/models/qa/explain", json={"inputs": [{"question": "who ?", "context": QA_CONTEXT}]})
    names = [t["name"] for t in qa.json()["explanations"][0]["targets"]]
    assert len(names) == 2 and names[0].startswith("answer start") and names[1].startswith("answer end")
    refused = client.post("/v1/models/writer/explain", json={"inputs": ["where did alice go ?"]})
    assert refused.status_code == 422 and "cannot be explained" in refused.json()["detail"]
    bad = client.post("/v1/models/classification/explain", json={"inputs": ["good"], "options": {"label": "x"}})
    assert bad.status_code == 422 and "unknown label" in bad.json()["detail"]
    assert client.post("/v1/models/nope/explain", json={"inputs": ["good"]}).status_code == 404
