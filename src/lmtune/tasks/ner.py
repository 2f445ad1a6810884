"""Token classification (NER): tags per word, entity-level scores, entities with char offsets.

- Input: CoNLL column files, or JSONL with `tokens`+`tags` or `text`+`entities` (char spans).
  Tags in IOB1, IOB2/BIO or BIOES are converted to IOB2, the scheme the model learns.
- Alignment: the word's tag sits on its first word piece; the other pieces carry no loss
  (or, with data.label_all_tokens, the I- tag of the word's entity).
- Long inputs are split into overlapping windows that start and end at word boundaries; at
  prediction each word takes its tag from the window where it has the most context around it.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.records import DataIssue, Dataset, Record
from ..data.tags import best_valid_tags, detect_scheme, entity_spans, inconsistencies, split_tag, to_iob2
from ..data.words import join_words, split_words
from .base import Encoded, ExplainTarget, RecordOp, Task, TokenWords, require_text
from .batch import IGNORE_INDEX, pad_token_labels

if TYPE_CHECKING:
    from ..data.edits import Edit
    from ..evaluation.calibration import CalibrationScores

Mentions = dict[str, list[list[str]]]  # entity type -> the distinct mentions of it, as words


class NerTask(Task):
    name = "ner"
    pipeline_tag = "token-classification"
    default_metric = "f1"
    default_format = "conll"  # CoNLL-2003 ships as train.txt / valid.txt / test.txt
    selection_metrics = {"f1": True, "precision": True, "recall": True, "token_accuracy": True,
                         **{f"{a}_{m}": True for a in ("macro", "micro", "weighted")
                            for m in ("f1", "precision", "recall")}}
    input_kinds = ("text", "words")  # raw text, or a list of words
    windows_long_inputs = True
    peft_task_type = "TOKEN_CLS"
    explainable = True
    calibratable = True

    def format_prediction(self, prediction: Any, text: str) -> str:
        """The entities found (type, text, span, score), then the input text."""
        found = "; ".join(f"{e['type']}: {e['text']!r} [{e['start']}:{e['end']}] {e['score']:.2f}"
                          for e in prediction["entities"])
        return f"{found or '(no entities)'}\t{text}\n"

    def same_prediction(self, a: Any, b: Any) -> bool:
        """The same entities (type and span); their scores may differ slightly."""
        return [(e["type"], e["start"], e["end"]) for e in a["entities"]] == \
               [(e["type"], e["start"], e["end"]) for e in b["entities"]]

    def __init__(self, cfg):
        super().__init__(cfg)
        self.labels: list[str] = []
        self.scheme = cfg.data.tag_scheme
        self.class_weights: torch.Tensor | None = None

    @property
    def auto_model_class(self) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    # ---- records -> words, offsets and IOB2 tags ------------------------------------------
    def words(self, record: Record) -> tuple[list[str], list[tuple[int, int]], str]:
        """Words of a record with character spans into its text (joined by spaces if given as tokens)."""
        if "tokens" in record.fields:
            words = [str(w) for w in record.fields["tokens"]]
            text, spans = join_words(words)
            return words, spans, text
        text = str(record.fields.get("text", ""))
        found = split_words(text)
        return [w for w, _, _ in found], [(s, e) for _, s, e in found], text

    def tags(self, record: Record) -> list[str]:
        """IOB2 tags of a labeled record (from `tags`, or from character `entities`)."""
        if "tags" in record.fields:
            return to_iob2([str(t) for t in record.fields["tags"]], self.scheme)
        _, spans, _ = self.words(record)
        tags = ["O"] * len(spans)
        for entity in record.fields.get("entities", []):
            inside = [i for i, (s, e) in enumerate(spans) if s < entity["end"] and e > entity["start"]]
            for j, i in enumerate(inside):
                tags[i] = f"{'B' if j == 0 else 'I'}-{entity['label']}"
        return tags

    def fit(self, train: Dataset) -> None:
        if self.scheme == "auto":
            self.scheme = detect_scheme([list(map(str, r.fields.get("tags", []))) for r in train.records])
        # Types from valid tags only: a bad tag (X-LOC) is an error the checks report, not a type.
        kinds = sorted({split_tag(t)[1] for r in train.records for t in self.tags(r)
                        if split_tag(t)[0] in ("B", "I")} - {""})
        if not kinds:
            raise ValueError(f"{train.path}: no entity tags found; NER needs B-/I- (or S-/E-) tags")
        self.labels = ["O"] + [f"{p}-{k}" for k in kinds for p in ("B", "I")]
        self.label_counts = Counter(split_tag(t)[1] for r in train.records for t in self.tags(r)
                                    if split_tag(t)[0] == "B")
        if self.cfg.train.class_weights == "balanced":  # per tag: words / (tags x its count)
            counts = Counter(t for r in train.records for t in self.tags(r))
            total = sum(counts.values())
            self.class_weights = torch.tensor(
                [total / (len(self.labels) * max(counts[label], 1)) for label in self.labels])

    def model_config(self) -> dict[str, Any]:
        return {"num_labels": len(self.labels), "id2label": dict(enumerate(self.labels)),
                "label2id": {label: i for i, label in enumerate(self.labels)}}

    def restore(self, hf_config: Any) -> None:
        self.labels = [hf_config.id2label[i] for i in range(len(hf_config.id2label))]
        self.scheme = "iob2"

    def make_record(self, item: Any, pair: Any = None, index: int = 0) -> Record:
        """Raw text (split by the word rule in data/words.py) or a list of words."""
        if isinstance(item, str):
            return Record({"text": require_text(item, index)}, "<input>", index + 1)
        if isinstance(item, (list, tuple)) and all(isinstance(w, str) for w in item):
            return Record({"tokens": list(item)}, "<input>", index + 1)
        raise TypeError(f"input {index}: expected a string or a list of words, got {type(item).__name__}")

    # ---- editing: augmentation, perturbations ---------------------------------------------
    def edit_record(self, record: Record, edit: Edit) -> tuple[Record, int]:
        """The words edited around the entities, which are protected (never changed, moved, split
        or preceded by an insertion); each tag follows its word, inserted words are O."""
        words, _, _ = self.words(record)
        tags = self.tags(record)
        result = edit(words, [t != "O" for t in tags])
        if not result.changed:
            return dataclasses.replace(record, fields=dict(record.fields)), 0
        new_tags = ["O" if s is None else tags[s] for s in result.source]
        return self._rebuilt(record, result.words, new_tags, result.source), result.changed

    def record_ops(self, train: Sequence[Record]) -> dict[str, RecordOp]:
        """"mention": entity mentions replaced by other training mentions of their type."""
        pool: dict[str, dict[tuple[str, ...], None]] = {}  # ordered sets: the same pool every run
        for record in train:
            words = self.words(record)[0]
            for kind, first, last in entity_spans(self.tags(record)):
                pool.setdefault(kind, {})[tuple(words[first:last])] = None
        mentions = {kind: [list(m) for m in found] for kind, found in pool.items()}
        return {"mention": lambda record, rng, rate: self._replace_mentions(record, rng, rate, mentions)}

    def _replace_mentions(self, record: Record, rng: random.Random, rate: float,
                          mentions: Mentions) -> tuple[Record, int]:
        """~rate of the record's mentions (at least one) swapped for another mention of the same
        type; returns the words of the new mentions as the words changed."""
        from ..data.edits import how_many

        words, tags = self.words(record)[0], self.tags(record)
        spans = entity_spans(tags)
        source: list[int | None] = list(range(len(words)))
        changed = 0
        for i in sorted(rng.sample(range(len(spans)), how_many(rate, len(spans))), reverse=True):
            kind, first, last = spans[i]  # right to left: earlier spans keep their indices
            others = [m for m in mentions.get(kind, []) if m != words[first:last]]
            if not others:
                continue
            mention = rng.choice(others)
            words[first:last] = mention
            tags[first:last] = [f"B-{kind}"] + [f"I-{kind}"] * (len(mention) - 1)
            source[first:last] = [first] * len(mention)
            changed += len(mention)
        if not changed:
            return dataclasses.replace(record, fields=dict(record.fields)), 0
        return self._rebuilt(record, words, tags, source), changed

    def _rebuilt(self, record: Record, words: list[str], tags: list[str],
                 source: list[int | None]) -> Record:
        """A copy of `record` holding `words` tagged `tags` (IOB2), in the record's own form:
        tokens + tags, or text (words joined by spaces) + entities with exact offsets."""
        fields = dict(record.fields)
        if "tokens" in fields:
            fields["tokens"] = words
            if "tags" in fields:
                fields["tags"] = tags
        else:
            fields["text"], spans = join_words(words)
            entities = [{"start": spans[first][0], "end": spans[last - 1][1], "label": kind}
                        for kind, first, last in entity_spans(tags)]
            if "entities" in fields:
                fields["entities"] = entities
            if "tags" in fields:  # the new text splits into its own words: tag those
                fields["tags"] = self.tags(Record({"text": fields["text"], "entities": entities}, "", 0))
        if "token_lines" in fields:  # a word keeps the line it came from; a new one the record's
            lines = fields["token_lines"]
            fields["token_lines"] = [record.line if s is None else lines[s] for s in source]
        return dataclasses.replace(record, fields=fields)

    # ---- data checks --------------------------------------------------------------------
    def required_columns(self, columns: Sequence[str], labeled: bool = True) -> list[tuple[str, str | None]]:
        """Words as `tokens` (tagged by `tags`) or as `text` (tagged by `entities` spans)."""
        if "tokens" not in columns and "text" not in columns:
            return [("tokens", None)]
        if labeled and "tags" not in columns and "entities" not in columns:
            return [("tags" if "tokens" in columns else "entities", None)]
        return []

    def check(self, datasets: dict[str, Dataset]) -> list[DataIssue]:
        issues: list[DataIssue] = []
        known = set(self.labels)
        for split, dataset in datasets.items():
            issues += dataset.issues
            for record in dataset.records:
                words, _, _ = self.words(record)
                if not words:
                    issues.append(DataIssue("error", record.source, record.line, "tokens",
                                            "no words in this example", "remove the row"))
                    continue
                if "tags" not in record.fields and "entities" not in record.fields:
                    issues.append(DataIssue("error", record.source, record.line, "tags",
                                            "no tags or entities", "give tags per token or char spans"))
                    continue
                if "tags" in record.fields and len(record.fields["tags"]) != len(words):
                    issues.append(DataIssue("error", record.source, record.line, "tags",
                                            f"{len(record.fields['tags'])} tags for {len(words)} tokens"))
                    continue
                lines = record.fields.get("token_lines") or [record.line] * len(words)
                tags = self.tags(record)
                for index, problem in inconsistencies(tags):
                    issues.append(DataIssue("warning", record.source, lines[index], "tag",
                                            f"inconsistent tag sequence: {problem}",
                                            "read as the start of a new entity"))
                for index, tag in enumerate(tags):
                    if split_tag(tag)[0] not in ("O", "B", "I"):
                        issues.append(DataIssue("error", record.source, lines[index], "tag",
                                                f"unknown tag {tag!r}", "use O, B-x, I-x (or S-x, E-x)"))
                    elif split != "train" and known and tag not in known:
                        issues.append(DataIssue("error", record.source, lines[index], "tag",
                                                f"tag {tag!r} does not occur in the training data",
                                                "add training examples of this type, or fix the tag"))
        return issues

    # ---- encoding: word pieces, labels, windows ------------------------------------------
    def encode(self, records: Sequence[Record], tokenizer: Any, max_length: int,
               with_labels: bool = True) -> Encoded:
        if not records:
            return Encoded([], records)
        all_words = [self.words(r)[0] for r in records]
        pieces = tokenizer(all_words, is_split_into_words=True, add_special_tokens=False,
                           return_attention_mask=False)
        label_index = {label: i for i, label in enumerate(self.labels)}
        prefix, suffix = _special_tokens(tokenizer)
        room = max_length - len(prefix) - len(suffix)
        overlap = min(self.cfg.data.window_overlap, room // 2)
        features, windowed, lengths = [], 0, []
        for r, record in enumerate(records):
            ids = pieces["input_ids"][r]
            word_ids = pieces.word_ids(r)
            lengths.append(len(ids) + len(prefix) + len(suffix))
            tags = [label_index[t] for t in self.tags(record)] if with_labels else None
            windows = _windows(word_ids, room, overlap)
            windowed += len(windows) > 1
            for start, end in windows:
                features.append(self._feature((prefix, suffix), ids[start:end], word_ids[start:end], tags, r))
        return Encoded(features, records, windowed=windowed, lengths=lengths)

    def _feature(self, specials: tuple[list[int], list[int]], ids: list[int],
                 word_ids: list[int | None], tags: list[int] | None, record_index: int) -> dict[str, Any]:
        first_piece, previous = [], None
        for w in word_ids:
            first_piece.append(w if w is not None and w != previous else -1)
            previous = w
        prefix, suffix = specials
        feature = {"input_ids": prefix + ids + suffix, "record": record_index,
                   "words": [-1] * len(prefix) + first_piece + [-1] * len(suffix)}
        if tags is not None:
            labels = [IGNORE_INDEX] * len(prefix)
            for w, first in zip(word_ids, first_piece):
                if first >= 0:
                    labels.append(tags[first])
                elif w is not None and self.cfg.data.label_all_tokens:
                    labels.append(self._inside(tags[w]))
                else:
                    labels.append(IGNORE_INDEX)
            feature["labels"] = labels + [IGNORE_INDEX] * len(suffix)
        return feature

    def _inside(self, label_id: int) -> int:
        prefix, kind = split_tag(self.labels[label_id])
        return self.labels.index(f"I-{kind}") if prefix == "B" else label_id

    # ---- loss, stitching, metrics, predictions ------------------------------------------
    def collate_labels(self, labels: Sequence[Any], longest: int) -> torch.Tensor:
        return pad_token_labels(labels, longest)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weights = None if self.class_weights is None else self.class_weights.to(logits.device)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               weight=weights, ignore_index=IGNORE_INDEX,
                               label_smoothing=self.cfg.train.label_smoothing)

    def word_logits(self, logits: Sequence[np.ndarray], encoded: Encoded) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per record, (words x labels) logits, each word's from its most central window, and
        which words had a window at all (a word no piece stands for has none)."""
        counts = [len(self.words(r)[0]) for r in encoded.records]
        rows = [np.zeros((n, len(self.labels)), dtype=np.float32) for n in counts]
        context = [np.full(n, -1) for n in counts]
        for feature, row in zip(encoded.features, logits):
            positions = [(p, w) for p, w in enumerate(feature["words"]) if w >= 0]
            r = feature["record"]
            for k, (p, w) in enumerate(positions):
                margin = min(k, len(positions) - 1 - k)  # words of context on the nearer side
                if margin > context[r][w]:
                    context[r][w] = margin
                    rows[r][w] = row[p]
        return [(row, seen >= 0) for row, seen in zip(rows, context)]

    def word_probs(self, logits: Sequence[np.ndarray], encoded: Encoded) -> list[np.ndarray]:
        """Per record, (words x labels) probabilities; each word from its most central window
        (all zero for a word without one)."""
        probs = []
        for row, seen in self.word_logits(logits, encoded):
            shifted = np.exp(row - row.max(-1, keepdims=True))
            probs.append(np.where(seen[:, None], shifted / shifted.sum(-1, keepdims=True), 0.0).astype(np.float32))
        return probs

    def calibration_scores(self, logits: Sequence[np.ndarray], encoded: Encoded) -> CalibrationScores:
        """Every labelled word is one example: its logits as prediction reads them (the most
        central window's) against its gold tag, one softmax over the tags."""
        from ..evaluation.calibration import CalibrationScores

        index = {label: i for i, label in enumerate(self.labels)}
        scores, gold = [], []
        for record, (row, seen) in zip(encoded.records, self.word_logits(logits, encoded)):
            scores.append(row[seen])
            gold += [index[t] for t, s in zip(self.tags(record), seen) if s]
        return CalibrationScores(np.concatenate(scores) if scores else np.zeros((0, len(self.labels))),
                                 np.array(gold, dtype=int), "softmax")

    def best_tags(self, probs: np.ndarray) -> list[str]:
        return best_valid_tags(np.log(np.maximum(probs, 1e-12)), self.labels)

    def metrics(self, logits: Sequence[np.ndarray], encoded: Encoded) -> dict[str, Any]:
        from seqeval.metrics import classification_report
        from seqeval.scheme import IOB2

        predicted = [self.best_tags(p) for p in self.word_probs(logits, encoded)]
        gold = [self.tags(r) for r in encoded.records]
        report = classification_report(gold, predicted, mode="strict", scheme=IOB2,
                                        output_dict=True, zero_division=0)
        kinds = sorted(k for k in report if k not in ("micro avg", "macro avg", "weighted avg"))
        flat_gold = [t for tags in gold for t in tags]
        flat_pred = [t for tags in predicted for t in tags]
        result: dict[str, Any] = {
            "f1": float(report["micro avg"]["f1-score"]),  # entity-level micro F1, the usual headline
            "precision": float(report["micro avg"]["precision"]),
            "recall": float(report["micro avg"]["recall"]),
            **{f"{average}_{name}": float(report[f"{average} avg"][key])
               for average in ("micro", "macro", "weighted")
               for name, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"))},
            "token_accuracy": float(np.mean([g == p for g, p in zip(flat_gold, flat_pred)])),
            "support": int(report["micro avg"]["support"]),
            "per_class": {k: {"precision": float(report[k]["precision"]), "recall": float(report[k]["recall"]),
                              "f1": float(report[k]["f1-score"]), "support": int(report[k]["support"])}
                          for k in kinds},
        }
        types = ["O"] + sorted({split_tag(t)[1] for t in self.labels} - {""})
        index = {t: i for i, t in enumerate(types)}
        matrix = np.zeros((len(types), len(types)), dtype=int)
        for g, p in zip(flat_gold, flat_pred):
            matrix[index[split_tag(g)[1] or "O"], index[split_tag(p)[1] or "O"]] += 1
        result["confusion_matrix"], result["confusion_labels"] = matrix.tolist(), types
        return result

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded, **options: Any) -> list[dict[str, Any]]:
        results = []
        for record, probs in zip(encoded.records, self.word_probs(logits, encoded)):
            words, spans, text = self.words(record)
            tags = self.best_tags(probs)
            confidence = probs[np.arange(len(tags)), [self.labels.index(t) for t in tags]]
            entities = []
            for kind, first, last in entity_spans(tags):
                start, end = spans[first][0], spans[last - 1][1]
                entities.append({"type": kind, "text": text[start:end], "start": start, "end": end,
                                 "score": float(confidence[first:last].mean())})
            results.append({"entities": entities, "tags": tags, "words": words})
        return results

    def example_rows(self, logits: Sequence[np.ndarray], encoded: Encoded, **options: Any) -> list[dict[str, Any]]:
        """Per record: its words joined by single spaces, the gold and predicted entities (as
        "TYPE: words; ...", their types, and character spans into that text), correct when the
        two entity sets are equal; loss: the mean cross-entropy of the gold tags over the words
        the model read, each from the window prediction takes it from."""
        from ..evaluation.examples import example_row

        index = {label: i for i, label in enumerate(self.labels)}
        rows = []
        for r, (record, probs) in enumerate(zip(encoded.records, self.word_probs(logits, encoded))):
            words = self.words(record)[0]
            text, spans = join_words(words)
            gold_tags, read = self.tags(record), probs.sum(-1) > 0
            gold, found = entity_spans(gold_tags), entity_spans(self.best_tags(probs))
            gold_p = probs[np.arange(len(words)), [index[t] for t in gold_tags]][read]
            loss = float(-np.log(np.maximum(gold_p, 1e-12)).mean()) if len(gold_p) else 0.0
            rows.append(example_row(r, record, text, _entities_text(gold, words), _entities_text(found, words),
                                    correct=set(gold) == set(found), loss=loss,
                                    gold_classes=sorted({k for k, _, _ in gold}),
                                    predicted_classes=sorted({k for k, _, _ in found}),
                                    spans=(_char_spans(gold, spans), _char_spans(found, spans))))
        return rows

    def explain_targets(self, logits: Sequence[np.ndarray], encoded: Encoded,
                        label: str | None = None) -> list[list[ExplainTarget]]:
        """Per predicted entity (of type `label` only, if given): the logit of its first word's
        tag at that word's first piece, in the window where the word has the most context."""
        kinds = sorted({split_tag(t)[1] for t in self.labels} - {""})
        if label is not None and label not in kinds:
            raise ValueError(f"label {label!r} is not an entity type of this model; choose among: "
                             f"{', '.join(kinds)}")
        targets = []
        for r, (record, probs) in enumerate(zip(encoded.records, self.word_probs(logits, encoded))):
            _, spans, text = self.words(record)
            tags, found = self.best_tags(probs), []
            for kind, first, last in entity_spans(tags):
                if label is not None and kind != label:
                    continue
                feature, position = self._first_piece(encoded, r, first)
                column, (start, end) = self.labels.index(tags[first]), (spans[first][0], spans[last - 1][1])
                found.append(ExplainTarget(f"{kind} {text[start:end]!r} [{start}:{end}]", feature,
                                           lambda z, p=position, c=column: z[:, p, c]))
            targets.append(found)
        return targets

    @staticmethod
    def _first_piece(encoded: Encoded, record: int, word: int) -> tuple[int, int]:
        """(feature, token position) of a word's first piece, in its most central window (the
        window `word_probs` takes its tag from)."""
        best = (-1, 0, 0)
        for f, feature in enumerate(encoded.features):
            if feature["record"] != record:
                continue
            positions = [p for p, w in enumerate(feature["words"]) if w >= 0]
            for k, p in enumerate(positions):
                margin = min(k, len(positions) - 1 - k)
                if feature["words"][p] == word and margin > best[0]:
                    best = (margin, f, p)
        return best[1], best[2]

    def explain_words(self, encoded: Encoded, feature: int, tokenizer: Any) -> TokenWords:
        """The record's words; a word's later pieces belong to it, the special tokens to none."""
        row = encoded.features[feature]
        _, spans, text = self.words(encoded.records[row["record"]])
        prefix, suffix = (len(s) for s in _special_tokens(tokenizer))
        result: list[tuple[int, int, int] | None] = [None] * len(row["input_ids"])
        current = None
        for p in range(prefix, len(result) - suffix):
            if row["words"][p] >= 0:
                current = (0, *spans[row["words"][p]])
            result[p] = current
        return TokenWords([("text", text)], result)

    def plots(self, metrics: dict[str, Any], out_dir: Path, prefix: str = "") -> list[Path]:
        from ..evaluation.plots import confusion_matrix

        path = Path(out_dir) / f"{prefix}confusion_matrix.png"
        confusion_matrix(metrics["confusion_matrix"], metrics["confusion_labels"], path,
                         title="Token confusion by entity type")
        return [path]

    def summary(self, metrics: dict[str, Any]) -> str:
        from ..evaluation.metrics import format_report

        return f"{format_report(metrics)}\n{'token accuracy':>14}  {metrics['token_accuracy']:.4f}"


def _entities_text(entities: list[tuple[str, int, int]], words: list[str]) -> str:
    """Entities (type, first word, last word + 1) as people read them: "PER: alice smith; LOC: rome"."""
    return "; ".join(f"{kind}: {' '.join(words[first:last])}" for kind, first, last in entities) or "(none)"


def _char_spans(entities: list[tuple[str, int, int]], spans: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Entities as {start, end, label}: character offsets of their words in the text."""
    return [{"start": spans[first][0], "end": spans[last - 1][1], "label": kind} for kind, first, last in entities]


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a sequence ([CLS] / [SEP], <s> / </s>, none)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return full[:i], full[i + len(plain):]
    return [], []


def _windows(word_ids: list[int | None], room: int, overlap: int) -> list[tuple[int, int]]:
    """Piece ranges [start, end) of at most `room` pieces, cut at word starts, overlapping by
    about `overlap` pieces, covering every piece."""
    n = len(word_ids)
    if n <= room:
        return [(0, n)]
    starts = [i for i in range(n) if i == 0 or word_ids[i] != word_ids[i - 1]]
    windows, start = [], 0
    while True:
        limit = start + room
        if limit >= n:
            windows.append((start, n))
            return windows
        end = max((s for s in starts if start < s <= limit), default=limit)  # a word longer than
        windows.append((start, end))                                       # room is cut inside
        target = max(end - overlap, start + 1)
        start = min((s for s in starts if s >= target), default=end)
        start = min(start, end)
