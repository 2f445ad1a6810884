"""Word-level edits (lmtune.data.edits) and how each task edits its records: seeded, sized by
the rate, never touching protected words, and labels that follow the words."""

from __future__ import annotations

import random

import pytest

from lmtune.data.edits import (EDA, OPERATIONS, PERTURBATIONS, KEYBOARD, WordEdit, make_edit, record_rng,
                               unchanged)
from lmtune.data.records import Dataset, Record
from lmtune.data.synonyms import STOPWORDS
from lmtune.data.tags import entity_spans, inconsistencies
from lmtune.data.words import join_words
from conftest import make_task, ner_sentence

THESAURUS = {"film": ["movie", "picture", "flick", "motion"], "good": ["fine", "great"],
             "really": ["truly"], "fun": ["enjoyable"], "alice": ["alicia"], "paris": ["lutetia"],
             "the": ["ye"], "visited": ["saw"], "today": ["now"]}
SENTENCES = ["the film was really good and it was fun today", "alice met bob in paris .",
             "it was quite a good film , really", "we visited rome and the film was fun"]


def synonyms(word: str) -> list[str]:
    return THESAURUS.get(word.lower(), [])


def _apply(name: str, seed: int, words: list[str], protected: list[bool] | None = None,
           rate: float = 0.2) -> WordEdit:
    return make_edit(name, random.Random(seed), rate, synonyms)(words, protected or [False] * len(words))


# ---- the operations --------------------------------------------------------------------------
def test_names_and_factory_errors():
    assert set(PERTURBATIONS) | set(EDA) == set(OPERATIONS)
    with pytest.raises(ValueError, match="unknown edit 'shuffle'; choose among: typo, case, punct"):
        make_edit("shuffle", random.Random(0), 0.1)
    with pytest.raises(ValueError, match="'synonym' edit needs synonyms"):
        make_edit("synonym", random.Random(0), 0.1)
    with pytest.raises(ValueError, match=r"edit rate 1.5 .* \[0, 1\]"):
        make_edit("typo", random.Random(0), 1.5)
    assert unchanged(["a", "b"]) == WordEdit(["a", "b"], [0, 1], 0)


def test_same_seed_same_edit_other_seed_other_edit():
    for name in OPERATIONS:
        outputs = {seed: [_apply(name, seed, s.split()).words for s in SENTENCES] for seed in (0, 1)}
        assert outputs[0] == [_apply(name, 0, s.split()).words for s in SENTENCES], name
        assert outputs[0] != outputs[1], name


def test_record_rng_is_seeded_by_a_string_not_hash():
    assert record_rng(7, 2, "copy", 1).random() == random.Random("7:2:copy:1").random()
    assert record_rng(7, 2).random() != record_rng(7, 3).random()


def test_rate_sets_how_many_words_change():
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet".split()  # 10 eligible
    for name in ("typo", "case"):
        for rate, expected in ((0.0, 1), (0.3, 3), (0.5, 5), (1.0, 10)):
            result = _apply(name, 3, words, rate=rate)
            assert result.changed == expected == sum(a != b for a, b in zip(result.words, words)), name
            assert result.source == list(range(10))
    deleted = _apply("delete", 3, words, rate=0.5)
    assert (len(deleted.words), deleted.changed) == (5, 5)
    assert deleted.words == [words[i] for i in deleted.source]
    # synonym and insert count only words that have synonyms and are not stopwords ("the", "it")
    sentence = "the film was really good and it was fun today".split()
    eligible = [w for w in sentence if synonyms(w) and w not in STOPWORDS]
    assert eligible == ["film", "really", "good", "fun", "today"]
    replaced = _apply("synonym", 1, sentence, rate=0.4)
    assert replaced.changed == 2
    assert all(new in synonyms(old)[:3] for old, new in zip(sentence, replaced.words) if new != old)
    # a replacement comes from the word's best three synonyms, any of them
    assert {_apply("synonym", seed, ["film"]).words[0] for seed in range(40)} == {"movie", "picture", "flick"}
    inserted = _apply("insert", 1, sentence, rate=0.6)
    assert (inserted.changed, len(inserted.words), inserted.source.count(None)) == (3, 13, 3)
    assert [w for w, s in zip(inserted.words, inserted.source) if s is not None] == sentence


def test_delete_keeps_a_word_and_swap_moves_neighbours():
    assert _apply("delete", 0, ["a", "b", "c"], rate=1.0).words in (["a"], ["b"], ["c"])
    assert _apply("delete", 0, ["alone"], rate=1.0) == WordEdit(["alone"], [0], 0)
    assert _apply("punct", 0, ["!", "?"], rate=1.0).words in (["!"], ["?"])
    swapped = _apply("swap", 2, "one two three four five six seven eight nine ten".split(), rate=0.1)
    i = next(j for j, s in enumerate(swapped.source) if s != j)
    assert swapped.source[i:i + 2] == [i + 1, i] and swapped.changed == 2


def _is_typo(old: str, new: str) -> bool:
    """new is old with two adjacent inner letters swapped, a letter dropped or repeated, or a
    letter replaced by a neighbouring key."""
    n = len(old)
    swaps = {old[:i] + old[i + 1] + old[i] + old[i + 2:] for i in range(1, n - 2)}
    drops = {old[:i] + old[i + 1:] for i in range(n)}
    repeats = {old[:i] + old[i] + old[i:] for i in range(n)}
    keys = {old[:i] + k + old[i + 1:] for i in range(n) for k in KEYBOARD.get(old[i], "")}
    return new != old and new in swaps | drops | repeats | keys


def test_each_operation_makes_its_own_kind_of_change():
    words = "the film was really good and it was fun today , wasn't it ?".split()
    for seed in range(30):
        for old, new in zip(words, _apply("typo", seed, words, rate=0.5).words):
            assert new == old or (old.isalpha() and len(old) >= 3 and _is_typo(old, new)), (old, new)
        cased = ["Paris", "NASA"] + words
        for old, new in zip(cased, _apply("case", seed, cased, rate=0.5).words):
            assert new == old or new in ({old.lower()} if old != old.lower() else {old.upper(), old.capitalize()})
        result = _apply("punct", seed, words, rate=0.5)
        kept = [words[s] for s in result.source]
        assert set(words) - set(kept) <= {",", "?"}  # only punctuation words are deleted
        for old, new in zip(kept, result.words):
            assert new == old or new[:-1] == old and new[-1] in ",.!?;", (old, new)
    assert _apply("punct", 0, ["end."], rate=1.0).words == ["end"]


def test_protected_words_are_never_touched():
    rng = random.Random(0)
    vocabulary = list(THESAURUS) + ["met", "bob", ",", "!", "quite", "it"]
    for seed in range(150):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(1, 12))]
        protected = [rng.random() < 0.3 for _ in words]
        for name in OPERATIONS:
            result = _apply(name, seed, words, protected, rate=rng.choice((0.1, 0.5, 1.0)))
            _check_protected(name, words, protected, result)


def _check_protected(name: str, words: list[str], protected: list[bool], result: WordEdit) -> None:
    assert len(result.words) == len(result.source) >= 1, name
    kept = [s for s in result.source if s is not None]
    assert len(kept) == len(set(kept)), name
    where = {s: j for j, s in enumerate(result.source) if s is not None}
    for p in (p for p, flag in enumerate(protected) if flag):
        j = where[p]  # never deleted
        assert result.words[j] == words[p], name  # never changed
        assert j == 0 or result.source[j - 1] is not None, name  # nothing inserted before it
        if p and protected[p - 1]:
            assert result.source[j - 1] == p - 1, name  # runs stay whole and in order
    order = [s for s in result.source if s is not None and protected[s]]
    assert order == sorted(order), name


# ---- NER records -----------------------------------------------------------------------------
def _ner_records(n: int, seed: int) -> tuple[list[Record], list[Record]]:
    """The same sentences as tokens + tags and as text + char entities (punctuation words in it)."""
    rng = random.Random(seed)
    tokens, texts = [], []
    for i in range(n):
        words, tags = ner_sentence(rng)
        words, tags = words + [rng.choice([".", "!", ","])], tags + ["O"]
        tokens.append(Record({"tokens": words, "tags": tags, "token_lines": list(range(10, 10 + len(words)))},
                             "t.conll", 10))
        text, spans = join_words(words)
        entities = [{"start": spans[a][0], "end": spans[b - 1][1], "label": kind}
                    for kind, a, b in entity_spans(tags)]
        texts.append(Record({"text": text, "entities": entities}, "t.jsonl", i + 1))
    return tokens, texts


@pytest.fixture(scope="module")
def ner():
    task = make_task("ner")
    tokens, texts = _ner_records(40, seed=1)
    task.fit(Dataset("train.conll", tokens))
    return task, tokens, texts


def _mentions(task, record: Record) -> list[tuple[str, list[str]]]:
    """(type, words) of each entity, read the way the task reads the record."""
    words = task.words(record)[0]
    return [(kind, words[a:b]) for kind, a, b in entity_spans(task.tags(record))]


def _check_ner(task, before: Record, after: Record) -> None:
    if "tokens" in before.fields:
        assert set(after.fields) == set(before.fields)
        assert len(after.fields["tokens"]) == len(after.fields["tags"]) == len(after.fields["token_lines"])
        assert inconsistencies(after.fields["tags"]) == []
        return
    text = after.fields["text"]
    assert set(after.fields) == {"text", "entities"}
    found = _mentions(task, after)
    assert len(found) == len(after.fields["entities"])
    for entity, (kind, words) in zip(after.fields["entities"], found):
        assert (text[entity["start"]:entity["end"]], entity["label"]) == (" ".join(words), kind)


def test_ner_edits_keep_entities_whole_and_tags_on_their_words(ner):
    task, tokens, texts = ner
    for seed in range(25):
        for name in OPERATIONS:
            edit = make_edit(name, random.Random(seed), 0.3, synonyms)
            for before in (tokens[seed], texts[seed]):
                after, changed = task.edit_record(before, edit)
                _check_ner(task, before, after)
                assert _mentions(task, after) == _mentions(task, before), (name, seed)
                assert (changed == 0) == (after.fields == before.fields), (name, seed)
                assert changed >= 1 or name not in ("case", "punct", "delete"), (name, seed)


def test_ner_edit_follows_sources_and_lines(ner):
    task, _, _ = ner
    record = Record({"tokens": ["alice", "visited", "paris", "today"],
                     "tags": ["B-person", "O", "B-location", "O"], "token_lines": [3, 4, 5, 6]}, "f", 3)
    after, changed = task.edit_record(record, lambda words, protected: WordEdit(
        ["now", "alice", "saw", "paris"], [None, 0, 1, 2], 3))
    assert changed == 3
    assert after.fields == {"tokens": ["now", "alice", "saw", "paris"],
                            "tags": ["O", "B-person", "O", "B-location"], "token_lines": [3, 3, 4, 5]}
    assert record.fields["tokens"] == ["alice", "visited", "paris", "today"]  # the original stays


def test_unchanged_text_record_keeps_its_exact_text(ner):
    task, _, _ = ner
    record = Record({"text": "Alice  met Bob.", "entities": [{"start": 0, "end": 5, "label": "person"}]}, "f", 1)
    after, changed = task.edit_record(record, lambda words, protected: unchanged(words))
    assert (after.fields, changed) == (record.fields, 0) and after is not record


def test_ner_mention_replacement(ner):
    task, tokens, texts = ner
    mention = task.record_ops(tokens)["mention"]
    pool = {(kind, tuple(words)) for record in tokens for kind, words in _mentions(task, record)}
    replaced = 0
    for seed in range(40):
        for before in (tokens[seed], texts[seed]):
            after, changed = mention(before, random.Random(seed), 0.5)
            _check_ner(task, before, after)
            old, new = _mentions(task, before), _mentions(task, after)
            assert [k for k, _ in new] == [k for k, _ in old]
            assert all((kind, tuple(words)) in pool for kind, words in new)
            differ = [words for (_, words), (_, was) in zip(new, old) if words != was]
            assert changed == sum(map(len, differ))
            assert bool(differ) == bool(old)  # at least one mention changes when there is one
            replaced += len(differ)
    assert replaced > 40
    assert make_task("classification").record_ops(tokens) == {}


# ---- the other tasks -------------------------------------------------------------------------
def _recording_edit(calls: list[list[str]]):
    def edit(words: list[str], protected: list[bool]) -> WordEdit:
        calls.append(list(words))
        assert not any(protected)
        return WordEdit([w.upper() for w in words], list(range(len(words))), len(words))

    return edit


def test_classification_edits_text_then_pair_and_keeps_the_label():
    task = make_task("classification", **{"data.text_pair_column": "hypothesis"})
    record = Record({"text": "a good  film", "hypothesis": "it was fun", "label": "pos"}, "f.csv", 2)
    calls: list[list[str]] = []
    after, changed = task.edit_record(record, _recording_edit(calls))
    assert calls == [["a", "good", "film"], ["it", "was", "fun"]]
    assert after.fields == {"text": "A GOOD FILM", "hypothesis": "IT WAS FUN", "label": "pos"}
    assert changed == 6 and (after.source, after.line) == ("f.csv", 2)
    assert record.fields["text"] == "a good  film"
    assert task.attackable and not make_task("classification", **{"data.multi_label": True}).attackable


def test_qa_edits_the_question_only():
    task = make_task("qa")
    record = Record({"id": "q1", "question": "who met bob ?", "context": "alice met bob .",
                     "answers": [{"text": "alice", "answer_start": 0}]}, "f.json", 1)
    calls: list[list[str]] = []
    after, changed = task.edit_record(record, _recording_edit(calls))
    assert calls == [["who", "met", "bob", "?"]] and changed == 4
    assert after.fields == {**record.fields, "question": "WHO MET BOB ?"}
    assert not task.attackable


def test_generation_edits_the_prompt_only():
    task = make_task("generation")
    record = Record({"prompt": "say hello", "response": "hello there"}, "f.jsonl", 1)
    after, changed = task.edit_record(record, _recording_edit([]))
    assert after.fields == {"prompt": "SAY HELLO", "response": "hello there"} and changed == 2
    chat = Record({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
                  "f.jsonl", 2)
    calls: list[list[str]] = []
    assert task.edit_record(chat, _recording_edit(calls)) == (chat, 0) and calls == []


def test_a_task_without_editable_text_says_so():
    task = make_task("prompted")
    with pytest.raises(ValueError, match="^prompted cannot edit its inputs"):
        task.edit_record(Record({"text": "x"}, "f", 1), unchanged)
    assert task.record_ops([]) == {} and not task.attackable
