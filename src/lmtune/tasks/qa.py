"""Extractive question answering: find the answer span in a context.

- Input: SQuAD v1.1/v2.0 JSON, or JSONL with `question`, `context`, `answers` (a list of
  {text, answer_start}, or the {text: [...], answer_start: [...]} form).
- Long contexts become overlapping windows (`data.window_overlap` tokens shared), each with its
  offset mapping. In training a window's target is the answer's tokens when the window holds
  the whole answer, else the [CLS] position (no answer here).
- Prediction takes the best span over all windows of a question: start <= end, at most
  `eval.max_answer_tokens` tokens, inside the context (never the question). With
  `eval.null_threshold` set (SQuAD 2.0 style), the empty answer wins when its score beats the
  best span's by more than that margin.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.records import DataIssue, Dataset, Record
from ..evaluation.squad_metrics import best_over_golds, exact_match, squad_scores, token_f1
from .base import Encoded, ExplainTarget, Task, TokenWords, edit_fields, encoding_words, require_text

if TYPE_CHECKING:
    from ..data.edits import Edit


def gold_answers(record: Record) -> list[dict[str, Any]]:
    """Answers as [{text, answer_start}], from either JSONL form."""
    answers = record.fields.get("answers") or []
    if isinstance(answers, dict):  # {"text": [...], "answer_start": [...]}
        return [{"text": t, "answer_start": int(s)} for t, s in zip(answers.get("text", []),
                                                                      answers.get("answer_start", []))]
    return [{"text": a["text"], "answer_start": int(a["answer_start"])} for a in answers]


class QuestionAnsweringTask(Task):
    name = "qa"
    pipeline_tag = "question-answering"
    default_metric = "f1"
    default_format = "squad"  # SQuAD v1.1/v2.0 JSON, whatever the file is called
    selection_metrics = {"f1": True, "exact_match": True}
    input_kinds = ("question_context",)
    onnx_outputs = ("start_logits", "end_logits")
    windows_long_inputs = True
    peft_task_type = "QUESTION_ANS"
    explainable = True

    def input_fields(self) -> tuple[str, str | None]:
        return "question", "context"  # the SQuAD field names, whatever the training file was

    def edit_record(self, record: Record, edit: Edit) -> tuple[Record, int]:
        """The question only: the answers are character spans of the context, which stays."""
        return edit_fields(record, ["question"], edit)

    def format_prediction(self, prediction: Any, text: str) -> str:
        """One line per answer (top_k > 1 gives a list): the answer, its span and score."""
        answers = prediction if isinstance(prediction, list) else [prediction]
        return "".join(f"{a['answer']!r}\t[{a['start']}:{a['end']}]\t{a['score']:.4f}\n" for a in answers)

    def same_prediction(self, a: Any, b: Any) -> bool:
        """The same answer span (the best one, for n-best lists); scores may differ slightly."""
        a, b = (p[0] if isinstance(p, list) else p for p in (a, b))
        return (a["start"], a["end"]) == (b["start"], b["end"])

    @property
    def auto_model_class(self) -> Any:
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering

    def fit(self, train: Dataset) -> None:
        self.label_counts = {"answerable": sum(1 for r in train.records if gold_answers(r)),
                             "unanswerable": sum(1 for r in train.records if not gold_answers(r))}

    def model_config(self) -> dict[str, Any]:
        return {}

    def restore(self, hf_config: Any) -> None:
        return None

    def make_record(self, item: Any, pair: Any = None, index: int = 0) -> Record:
        if not isinstance(item, str) or not isinstance(pair, str):
            raise TypeError(f"input {index}: QA needs a question and a context, both strings")
        require_text(item, index, "question"), require_text(pair, index, "context")
        return Record({"id": str(index + 1), "question": item, "context": pair}, "<input>", index + 1)

    def required_columns(self, columns: Sequence[str], labeled: bool = True) -> list[tuple[str, str | None]]:
        return [("question", None), ("context", None)]  # answers may be absent (unanswerable)

    def check(self, datasets: dict[str, Dataset]) -> list[DataIssue]:
        issues: list[DataIssue] = []
        for dataset in datasets.values():
            issues += dataset.issues
            for record in dataset.records:
                qid = record.fields.get("id", record.line)
                for field in ("question", "context"):
                    if not str(record.fields.get(field, "")).strip():
                        issues.append(DataIssue("error", record.source, record.line, field,
                                                f"question id {qid}: empty {field}"))
                context = str(record.fields.get("context", ""))
                for answer in gold_answers(record):
                    start, text = answer["answer_start"], answer["text"]
                    if context[start:start + len(text)] != text:
                        issues.append(DataIssue(
                            "error", record.source, record.line, "answers",
                            f"question id {qid}: answer {text!r} is not at answer_start {start} "
                            f"(the context there reads {context[start:start + len(text)]!r})",
                            "fix answer_start, or pass --data.on-error skip to leave it out"))
        return issues

    # ---- encoding ----------------------------------------------------------------------
    def encode(self, records: Sequence[Record], tokenizer: Any, max_length: int,
               with_labels: bool = True) -> Encoded:
        if not records:
            return Encoded([], records)
        encoding = self._tokenize(records, tokenizer, max_length)
        features = []
        windows = Counter(encoding["overflow_to_sample_mapping"])
        for i in range(len(encoding["input_ids"])):
            r = encoding["overflow_to_sample_mapping"][i]
            sequence_ids = encoding.sequence_ids(i)
            # Offsets only for context tokens; None elsewhere so no span can use the question.
            offsets = [tuple(o) if s == 1 else None for o, s in zip(encoding["offset_mapping"][i], sequence_ids)]
            feature = {"input_ids": encoding["input_ids"][i], "record": r, "offsets": offsets}
            if "token_type_ids" in encoding:
                feature["token_type_ids"] = encoding["token_type_ids"][i]
            if with_labels:
                feature["labels"] = _target(offsets, gold_answers(records[r]))
            features.append(feature)
        return Encoded(features, records, windowed=sum(1 for n in windows.values() if n > 1),
                       lengths=[len(f["input_ids"]) for f in features])

    def _tokenize(self, records: Sequence[Record], tokenizer: Any, max_length: int) -> Any:
        """Question + context pairs as windows over the context, with offsets."""
        questions = [str(r.fields["question"]).lstrip() for r in records]
        contexts = [str(r.fields["context"]) for r in records]
        return tokenizer(questions, contexts, truncation="only_second", max_length=max_length,
                         stride=min(self.cfg.data.window_overlap, max_length // 4),
                         return_overflowing_tokens=True, return_offsets_mapping=True,
                         return_attention_mask=False)

    # ---- loss and predictions -----------------------------------------------------------
    def model_logits(self, outputs: Any) -> torch.Tensor:
        return torch.stack([outputs.start_logits, outputs.end_logits], dim=-1)  # (batch, tokens, 2)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return (F.cross_entropy(logits[..., 0], labels[:, 0]) + F.cross_entropy(logits[..., 1], labels[:, 1])) / 2

    def best_spans(self, logits: Sequence[np.ndarray], encoded: Encoded, top_k: int = 1
                   ) -> list[list[dict[str, Any]]]:
        """Per record, the top_k answers over all its windows (empty text = no answer)."""
        limit, n_best = self.cfg.eval.max_answer_tokens, 20
        candidates: list[list[tuple[float, int, int]]] = [[] for _ in encoded.records]
        null_scores = [-np.inf] * len(encoded.records)
        for feature, row in zip(encoded.features, logits):
            r, offsets = feature["record"], feature["offsets"]
            start_logits, end_logits = row[:, 0], row[:, 1]
            null_scores[r] = max(null_scores[r], float(start_logits[0] + end_logits[0]))
            context = [i for i, o in enumerate(offsets) if o is not None]
            if not context:
                continue
            index = np.array(context)
            starts = index[np.argsort(start_logits[index])[::-1][:n_best]]
            ends = index[np.argsort(end_logits[index])[::-1][:n_best]]
            for s in starts:
                for e in ends:
                    if s <= e < s + limit:
                        candidates[r].append((float(start_logits[s] + end_logits[e]),
                                              offsets[s][0], offsets[e][1]))
        results = []
        for r, record in enumerate(encoded.records):
            context = str(record.fields["context"])
            ranked = sorted(set(candidates[r]), reverse=True)[: max(top_k, 1)]
            answers = [{"answer": context[a:b], "start": a, "end": b, "logit": score} for score, a, b in ranked]
            threshold = self.cfg.eval.null_threshold
            if threshold is not None and (not answers or null_scores[r] - answers[0]["logit"] > threshold):
                answers.insert(0, {"answer": "", "start": -1, "end": -1, "logit": null_scores[r]})
            if not answers:
                answers = [{"answer": "", "start": -1, "end": -1, "logit": null_scores[r]}]
            scores = np.array([a["logit"] for a in answers])
            probs = np.exp(scores - scores.max())
            probs /= probs.sum()
            for answer, p in zip(answers, probs):
                answer["score"] = float(p)
                del answer["logit"]
            results.append(answers[:top_k])
        return results

    def metrics(self, logits: Sequence[np.ndarray], encoded: Encoded) -> dict[str, Any]:
        predictions = [spans[0]["answer"] for spans in self.best_spans(logits, encoded)]
        golds = [[a["text"] for a in gold_answers(r)] for r in encoded.records]
        return squad_scores(predictions, golds)

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded, top_k: int = 1,
               **options: Any) -> list[Any]:
        spans = self.best_spans(logits, encoded, top_k)
        return [s[0] if top_k == 1 else s for s in spans]

    def example_rows(self, logits: Sequence[np.ndarray], encoded: Encoded, **options: Any) -> list[dict[str, Any]]:
        """Per record: the context and question, the first gold answer against the predicted one
        (correct: exact match against any gold, as the metrics score it), all as character spans
        of the context; loss: `_span_losses`, or 1 - F1 of the prediction when no window holds a
        whole gold answer (so the cross-entropy has no target)."""
        from ..evaluation.examples import example_row

        losses = self._span_losses(logits, encoded)
        rows = []
        for r, (record, (answer, *_)) in enumerate(zip(encoded.records, self.best_spans(logits, encoded))):
            answers = gold_answers(record)
            golds, predicted = [a["text"] for a in answers], answer["answer"]
            loss = losses[r] if losses[r] is not None else 1 - best_over_golds(token_f1, predicted, golds)
            gold_spans = {(a["answer_start"], a["answer_start"] + len(a["text"])): None for a in answers}
            found = [(answer["start"], answer["end"])] if answer["start"] >= 0 else []
            rows.append(example_row(r, record, str(record.fields["context"]), golds[0] if golds else "", predicted,
                                    correct=bool(best_over_golds(exact_match, predicted, golds)), loss=loss,
                                    pair=str(record.fields["question"]),
                                    spans=([{"start": a, "end": b, "label": "answer"} for a, b in gold_spans],
                                           [{"start": a, "end": b, "label": "answer"} for a, b in found])))
        return rows

    @staticmethod
    def _span_losses(logits: Sequence[np.ndarray], encoded: Encoded) -> list[float | None]:
        """Per record, the lowest (start cross-entropy + end cross-entropy) / 2 over its gold
        answers (an unanswerable question: the [CLS] target) and the windows that hold the answer
        whole; None when no window does."""
        from ..evaluation.examples import softmax_losses

        losses: list[float | None] = [None] * len(encoded.records)
        for feature, row in zip(encoded.features, logits):  # row: (tokens, 2) start, end logits
            r = feature["record"]
            answers = gold_answers(encoded.records[r])
            targets = [_target(feature["offsets"], [a]) for a in answers] if answers else [(0, 0)]
            for target in targets:
                if answers and target == (0, 0):  # the answer is not (all) in this window
                    continue
                loss = float(softmax_losses(row.T, np.array(target)).mean())
                losses[r] = loss if losses[r] is None else min(losses[r], loss)
        return losses

    def explain_targets(self, logits: Sequence[np.ndarray], encoded: Encoded,
                        label: str | None = None) -> list[list[ExplainTarget]]:
        """The start and end logits of the predicted answer, in the window that scores it best
        (no answer: the start and end logits at [CLS])."""
        if label is not None:
            raise ValueError("a QA explanation explains the predicted answer's start and end; "
                             "there is no label to choose (leave --label out)")
        targets = []
        for r, (answer, *_) in enumerate(self.best_spans(logits, encoded)):
            feature, start, end = self._answer_tokens(logits, encoded, r, answer["start"], answer["end"])
            shown = f"{answer['answer']!r}" if answer["answer"] else "(no answer)"
            targets.append([ExplainTarget(f"answer start {shown}", feature, lambda z, p=start: z[:, p, 0]),
                            ExplainTarget(f"answer end {shown}", feature, lambda z, p=end: z[:, p, 1])])
        return targets

    @staticmethod
    def _answer_tokens(logits: Sequence[np.ndarray], encoded: Encoded, record: int, start: int,
                       end: int) -> tuple[int, int, int]:
        """(feature, start token, end token) of the character span [start, end) where its start +
        end logit is highest; start < 0 (no answer) is [CLS], position 0."""
        first = next(f for f, feature in enumerate(encoded.features) if feature["record"] == record)
        best = (-np.inf, first, 0, 0)
        for f, (feature, row) in enumerate(zip(encoded.features, logits)):
            if feature["record"] != record:
                continue
            offsets = feature["offsets"]
            starts = [0] if start < 0 else [i for i, o in enumerate(offsets) if o and o[0] == start]
            ends = [0] if start < 0 else [i for i, o in enumerate(offsets) if o and o[1] == end]
            for s in starts:
                for e in (e for e in ends if e >= s):
                    if row[s, 0] + row[e, 1] > best[0]:
                        best = (row[s, 0] + row[e, 1], f, s, e)
        return best[1], best[2], best[3]

    def explain_words(self, encoded: Encoded, feature: int, tokenizer: Any) -> TokenWords:
        """The question's and the context's words, in the feature's window."""
        r = encoded.features[feature]["record"]
        record = encoded.records[r]
        encoding = self._tokenize([record], tokenizer, self.cfg.model.max_length)
        window = sum(1 for f in encoded.features[:feature] if f["record"] == r)
        segments = [("question", str(record.fields["question"]).lstrip()),
                    ("context", str(record.fields["context"]))]
        return TokenWords(segments, encoding_words(encoding, window))

    def summary(self, metrics: dict[str, Any]) -> str:
        return (f"exact match {metrics['exact_match']:.2f}  F1 {metrics['f1']:.2f}  "
                f"({metrics['support']} questions)")


def _target(offsets: list[tuple[int, int] | None], answers: list[dict[str, Any]]) -> tuple[int, int]:
    """Token (start, end) of the first gold answer if this window holds all of it, else (0, 0)."""
    if not answers:
        return (0, 0)
    start_char = answers[0]["answer_start"]
    end_char = start_char + len(answers[0]["text"])
    context = [i for i, o in enumerate(offsets) if o is not None]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return (0, 0)
    start = next(i for i in context if offsets[i][1] > start_char)
    end = next(i for i in reversed(context) if offsets[i][0] < end_char)
    return (start, end)

