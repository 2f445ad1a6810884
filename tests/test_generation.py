"""Generation on a tiny random Llama: masking, EOS, packing, batched generation, metrics, prompting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lmtune
from lmtune.data.records import Record
from lmtune.pipeline import finetune
from lmtune.tasks.batch import IGNORE_INDEX
from conftest import GOES_TO, gen_rows, make_task, tiny_config


def records(rows):
    return [Record(row, "mem.jsonl", i + 1) for i, row in enumerate(rows)]


@pytest.fixture(scope="module")
def llama(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(str(tiny_llama)).eval(), AutoTokenizer.from_pretrained(str(tiny_llama))


@pytest.fixture(scope="module")
def tuned_run(tiny_llama, gen_data, tmp_path_factory):
    cfg = tiny_config(tiny_llama, gen_data, tmp_path_factory.mktemp("runs"), epochs=12, batch_size=8)
    cfg.task = "generation"
    cfg.train.learning_rate = 1e-2
    return finetune(cfg, quiet=True)


def test_prompt_tokens_carry_no_loss(llama):
    model, tokenizer = llama
    task = make_task("generation")
    encoded = task.encode(records(gen_rows(4, seed=0)), tokenizer, 64)
    for feature, record in zip(encoded.features, encoded.records):
        prompt = tokenizer(record.fields["prompt"])["input_ids"]
        answer = tokenizer(record.fields["response"], add_special_tokens=False)["input_ids"]
        assert feature["input_ids"] == prompt + answer + [tokenizer.eos_token_id]
        assert feature["labels"] == [IGNORE_INDEX] * len(prompt) + answer + [tokenizer.eos_token_id]
    batch = task.collate(encoded.features, tokenizer.pad_token_id)
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch).logits
    # Scrambling every logit that predicts a prompt token leaves the loss as it was.
    scrambled = logits.clone()
    for row, feature in enumerate(encoded.features):
        n_prompt = feature["labels"].index(next(t for t in feature["labels"] if t != IGNORE_INDEX))
        scrambled[row, : n_prompt - 1] = torch.randn_like(scrambled[row, : n_prompt - 1]) * 10
    assert float(task.loss(scrambled, labels)) == pytest.approx(float(task.loss(logits, labels)), abs=1e-6)
    # Changing the logits that predict the first example's answer tokens changes the loss.
    first_answer = next(i for i, t in enumerate(encoded.features[0]["labels"]) if t != IGNORE_INDEX)
    scrambled[0, first_answer - 1:] += torch.randn_like(scrambled[0, first_answer - 1:])
    assert float(task.loss(scrambled, labels)) != pytest.approx(float(task.loss(logits, labels)), abs=1e-6)


def test_packing_gives_the_loss_of_separate_examples(llama):
    model, tokenizer = llama
    rows = records(gen_rows(6, seed=1))
    task = make_task("generation")
    plain = task.encode(rows, tokenizer, 64)
    packed = make_task("generation", **{"data.packing": True}).encode(rows, tokenizer, 64)
    assert len(packed.features) < len(plain.features)  # short examples share sequences
    losses = []
    for features in (plain.features, packed.features):
        batch = task.collate(features, tokenizer.pad_token_id)
        labels = batch.pop("labels")
        with torch.no_grad():
            losses.append(float(make_task("generation").loss(model(**batch).logits, labels)))
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)


def test_left_padded_batches_generate_what_single_prompts_do(llama):
    from lmtune.config import GenerationSettings
    from lmtune.inference.generate import generate

    model, tokenizer = llama
    prompts = [tokenizer(r["prompt"])["input_ids"] for r in gen_rows(5, seed=2)]
    assert len({len(p) for p in prompts}) > 1  # different lengths, so padding matters
    settings = GenerationSettings(max_new_tokens=8, batch_size=5)
    together = generate(model, tokenizer, prompts, settings)
    alone = [generate(model, tokenizer, [p], settings)[0] for p in prompts]
    assert together == alone
    assert any(together)


@pytest.mark.precision
def test_tuned_model_answers_and_stops_at_eos(tuned_run, gen_data):
    predictor = lmtune.load(tuned_run.root)
    prompts = [f"where did {person} go ?" for person in GOES_TO]
    outputs = predictor.predict(prompts, max_new_tokens=10)
    assert [o["generated_text"] for o in outputs] == list(GOES_TO.values())
    ids = predictor.tokenizer(prompts[0], return_tensors="pt")
    new = predictor.model.generate(**ids, max_new_tokens=10, pad_token_id=0)[0, ids["input_ids"].shape[1]:]
    assert new.tolist()[-1] == predictor.tokenizer.eos_token_id and len(new) < 10

    metrics = lmtune.evaluate(tuned_run.root, gen_data["validation"], quiet=True)
    assert metrics["exact_match"] == 100.0 and metrics["rouge_l"] == 100.0
    assert metrics["accuracy"] == 1.0 and set(metrics["per_class"]) == set(GOES_TO.values())
    recorded = json.loads(tuned_run.metrics.read_text())["validation"]
    assert metrics["perplexity"] == pytest.approx(recorded["perplexity"], rel=1e-6)
    assert recorded["perplexity"] < 1.5


def test_cli_generate_streams_and_writes_jsonl(tuned_run, tmp_path, capsys):
    from lmtune.cli import main

    assert main(["generate", str(tuned_run.root), "where did bob go ?"]) == 0
    assert "london" in capsys.readouterr().out
    out = tmp_path / "gen.jsonl"
    assert main(["generate", str(tuned_run.root), "where did alice go ?", "where did carol go ?",
                 "--output", str(out)]) == 0
    assert [json.loads(line)["generated_text"] for line in out.read_text().splitlines()] == ["paris", "rome"]


def test_chat_messages_train_on_the_last_assistant_turn(tmp_path):
    task = make_task("generation")
    chat = Record({"messages": [{"role": "user", "content": "where did bob go ?"},
                                {"role": "assistant", "content": "london"}]}, "chat.jsonl", 3)
    prompt, response = task.conversation(chat)
    assert response == "london" and prompt == [{"role": "user", "content": "where did bob go ?"}]
    bad = Record({"messages": [{"role": "user", "content": "hi"}]}, "chat.jsonl", 4)
    empty = Record({"prompt": "where ?", "response": " "}, "chat.jsonl", 5)
    from lmtune.data.records import Dataset

    issues = task.check({"train": Dataset("chat.jsonl", [chat, bad, empty], [], [])})
    assert [(i.line, i.field) for i in issues] == [(4, "messages"), (5, "response")]
    assert "not an assistant turn" in str(issues[0])


def test_generation_scores():
    from lmtune.evaluation.generation_metrics import generation_scores

    scores = generation_scores(["The Paris", "london", "rome city"], ["paris", "London", "rome"])
    assert scores["exact_match"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3) / 3)
    labels = generation_scores(["positive", "negative", "positive", "maybe"],
                               ["positive", "negative", "negative", "negative"])
    assert labels["accuracy"] == 0.5 and labels["unparsed_outputs"] == 1
    assert labels["per_class"]["negative"]["recall"] == pytest.approx(1 / 3)
    assert labels["per_class"]["positive"]["precision"] == 0.5


def test_decoder_label_scoring_matches_the_sequence_likelihood(llama):
    from lmtune.prompting import CONTENT_FREE, DecoderScorer, LabelSet, predictions

    model, tokenizer = llama
    labels = LabelSet.parse("pos=positive,neg=negative")
    scorer = DecoderScorer(model, tokenizer, labels, shots=[("good film", "pos"), ("bad film", "neg")])
    texts = ["a lovely film", "dull and boring"]
    fast = scorer.scores(texts)  # both labels are one token: one forward pass per text
    scorer.label_ids = [ids + [tokenizer.convert_tokens_to_ids(".")] for ids in scorer.label_ids]
    slow = scorer.scores(texts)  # two tokens each: one sequence per (text, label)
    with torch.no_grad():
        for t, text in enumerate(texts):
            for j, ids in enumerate(scorer.label_ids):
                seq = torch.tensor([scorer.prompt_ids(text) + ids])
                logprobs = model(seq).logits.log_softmax(-1)[0]
                n = len(ids)
                expected = sum(float(logprobs[seq.shape[1] - n - 1 + k, ids[k]]) for k in range(n))
                assert slow[t, j] == pytest.approx(expected, abs=1e-4)
                assert fast[t, j] == pytest.approx(float(logprobs[seq.shape[1] - n - 1, ids[0]]), abs=1e-4)
    scorer.label_ids = [ids[:1] for ids in scorer.label_ids]
    calibrated = fast - scorer.scores(CONTENT_FREE).mean(0)  # the prompt's own label bias removed
    assert [p["label"] for p in predictions(scorer, texts)] == [
        labels.values[int(i)] for i in calibrated.argmax(1)]


def test_encoder_similarity_uses_descriptions_and_shots(tiny_model):
    from transformers import AutoModel, AutoTokenizer

    from lmtune.prompting import EncoderSimilarity, LabelSet, draw_shots, evaluate

    labels = LabelSet.parse("1=good,0=bad")
    rows = [Record({"text": t, "label": v}, "f.csv", i) for i, (t, v) in enumerate(
        [("good film", "1"), ("superb story", "1"), ("bad film", "0"), ("awful plot", "0")] * 3)]
    shots = draw_shots(rows, lambda r: r.fields["text"], lambda r: r.fields["label"], labels, k=4)
    assert sorted(v for _, v in shots) == ["0", "0", "1", "1"]
    scorer = EncoderSimilarity(AutoModel.from_pretrained(str(tiny_model)),
                               AutoTokenizer.from_pretrained(str(tiny_model)), labels, shots)
    texts, gold = [t for t, _ in shots], [v for _, v in shots]
    metrics = evaluate(scorer, texts, gold)
    assert set(metrics["per_class"]) == {"1", "0"}
    # A text identical to a label's only evidence is closest to that label.
    only = EncoderSimilarity(scorer.model, scorer.tokenizer, labels, shots=[])
    assert np.argmax(only.scores(["good"])[0]) == 0 and np.argmax(only.scores(["bad"])[0]) == 1
    # The shots move each description towards what sets its label's examples apart: every
    # example's margin for its own label grows.
    own = [labels.values.index(v) for v in gold]

    def margins(s):
        scores = s.scores(texts)
        return np.array([row[i] - row[1 - i] for row, i in zip(scores, own)])

    assert (margins(scorer) > margins(only)).all()
