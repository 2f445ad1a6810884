"""Synonyms: a WordNet reader checked on a tiny wndb(5) folder written here (so the machine's
WordNet install does not matter), and embedding neighbours on hand-made embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lmtune.data import synonyms as syn
from lmtune.data.synonyms import (STOPWORDS, embedding_neighbours, load_synonyms, wordnet_folder,
                                  wordnet_synonyms)

# Synsets by key: (part of speech, lemmas, antonym keys).
SYNSETS = {
    "movie1": ("n", ["movie", "film", "motion_picture", "flick"], []),
    "movie2": ("n", ["movie", "picture"], []),
    "movie3": ("n", ["movie", "cinema"], []),
    "goodness": ("n", ["goodness", "good"], []),
    "good1": ("a", ["good", "fine"], ["bad1"]),
    "bad1": ("a", ["bad", "poor"], ["good1"]),
    # A marked adjective ("full(p)"), and an antonym of good's first sense that must not leak.
    "good2": ("s", ["good", "full(p)", "poor"], []),
    "run1": ("v", ["run", "sprint"], []),
    "run2": ("v", ["run", "flow"], []),
    "well": ("r", ["well", "good"], []),
}
# Index entries: (part of speech, lemma) -> (synset keys, most frequent first; tagged senses).
INDEX = {
    ("noun", "movie"): (["movie1", "movie2", "movie3"], 3), ("noun", "good"): (["goodness"], 0),
    ("noun", "goodness"): (["goodness"], 0), ("noun", "film"): (["movie1"], 1),
    ("adj", "good"): (["good1", "good2"], 2), ("adj", "bad"): (["bad1"], 1),
    ("verb", "run"): (["run1", "run2"], 2), ("adv", "good"): (["well"], 0),
}
FILE_OF = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
HEADER = "  1 A tiny WordNet for tests.  \n  2 License lines start with two spaces.  \n"


def _data_line(key: str, offsets: dict[str, int]) -> str:
    pos, lemmas, antonyms = SYNSETS[key]
    words = " ".join(f"{lemma} 0" for lemma in lemmas)
    pointers = "".join(f" ! {offsets[a]:08d} {SYNSETS[a][0]} 0101" for a in antonyms)
    return (f"{offsets[key]:08d} 00 {pos} {len(lemmas):02x} {words} {len(antonyms):03d}{pointers}"
            f" | a gloss  \n")


def write_wordnet(folder: Path) -> Path:
    """index.*, data.* with offsets that are the lines' byte positions, and verb.exc."""
    folder.mkdir(parents=True, exist_ok=True)
    offsets: dict[str, int] = {}
    for name in ("noun", "verb", "adj", "adv"):
        keys = [k for k, (pos, _, _) in SYNSETS.items() if FILE_OF[pos] == name]
        at = len(HEADER.encode())
        for key in keys:  # every offset field is 8 digits, so line lengths do not depend on them
            offsets[key] = at
            at += len(_data_line(key, {k: 0 for k in SYNSETS}).encode())
    for name in ("noun", "verb", "adj", "adv"):
        keys = [k for k, (pos, _, _) in SYNSETS.items() if FILE_OF[pos] == name]
        (folder / f"data.{name}").write_text(HEADER + "".join(_data_line(k, offsets) for k in keys))
        entries = sorted((lemma, keys_, tagged) for (pos, lemma), (keys_, tagged) in INDEX.items()
                         if pos == name)
        (folder / f"index.{name}").write_text(HEADER + "".join(
            f"{lemma} {name[0]} {len(ks)} 0 {len(ks)} {tagged} "
            f"{' '.join(f'{offsets[k]:08d}' for k in ks)}  \n" for lemma, ks, tagged in entries))
    (folder / "verb.exc").write_text("ran run\n")
    return folder


@pytest.fixture
def tiny_wordnet(tmp_path) -> Path:
    return write_wordnet(tmp_path / "dict")


def test_wordnet_senses_in_order_without_self_or_multiword(tiny_wordnet):
    assert wordnet_synonyms(tiny_wordnet, senses=1)("movie") == ["film", "flick"]
    assert wordnet_synonyms(tiny_wordnet, senses=2)("movie") == ["film", "flick", "picture"]
    assert wordnet_synonyms(tiny_wordnet, senses=3)("movie") == ["film", "flick", "picture", "cinema"]
    assert wordnet_synonyms(tiny_wordnet)("film") == ["movie", "flick"]
    assert wordnet_synonyms(tiny_wordnet).name == "wordnet"


def test_wordnet_commonest_part_of_speech_first_and_no_antonyms(tiny_wordnet):
    # adj (2 tagged senses) before noun and adv (0); the marker of full(p) dropped; poor is an
    # antonym of good's first sense, so it stays out although good's second sense lists it.
    assert wordnet_synonyms(tiny_wordnet)("good") == ["fine", "goodness", "well", "full"]
    assert wordnet_synonyms(tiny_wordnet)("bad") == ["poor"]


def test_wordnet_case_follows_the_word(tiny_wordnet):
    synonyms = wordnet_synonyms(tiny_wordnet)
    assert synonyms("Movie") == ["Film", "Flick", "Picture"]
    assert synonyms("MOVIE") == ["FILM", "FLICK", "PICTURE"]
    assert synonyms("unknown") == [] and synonyms("") == []


def test_wordnet_base_forms(tiny_wordnet):
    synonyms = wordnet_synonyms(tiny_wordnet)
    assert synonyms("movies") == ["film", "flick", "picture"]  # suffix rule
    assert synonyms("ran") == ["sprint", "flow"]  # verb.exc
    assert synonyms("runs") == ["sprint", "flow"]  # never "run", the word's own base


def test_wordnet_offsets_must_match(tiny_wordnet):
    data = tiny_wordnet / "data.noun"
    data.write_text("\n" + data.read_text())  # every synset one byte later than indexed
    with pytest.raises(ValueError, match="data.noun: no synset at byte"):
        wordnet_synonyms(tiny_wordnet)("movie")


def test_wordnet_folder_discovery_and_missing_error(tiny_wordnet, no_wordnet, monkeypatch):
    assert wordnet_folder() is None
    with pytest.raises(FileNotFoundError) as error:
        wordnet_synonyms()
    for advice in ("apt-get install wordnet-base", "brew install wordnet", "LMTUNE_WORDNET",
                   "--synonyms embeddings"):
        assert advice in str(error.value)
    with pytest.raises(FileNotFoundError, match="not a WordNet dict folder"):
        wordnet_synonyms(tiny_wordnet.parent)
    monkeypatch.setenv(syn.WORDNET_ENV, str(tiny_wordnet))
    assert wordnet_folder() == tiny_wordnet
    assert wordnet_synonyms()("film") == ["movie", "flick"]
    monkeypatch.setattr(syn, "_WORDNET_DIRS", (str(tiny_wordnet),))
    monkeypatch.setenv(syn.WORDNET_ENV, str(tiny_wordnet.parent))
    assert wordnet_folder() == tiny_wordnet  # a wrong $LMTUNE_WORDNET falls through


def test_stopwords_are_sklearns_plus_clitics():
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    assert ENGLISH_STOP_WORDS <= STOPWORDS
    assert {"n't", "'s", "don't"} <= STOPWORDS and "movie" not in STOPWORDS


# ---- embedding neighbours ------------------------------------------------------------------

# word -> embedding; cosines with "good": great .99, fine .6, the 1.0 (a stopword), bad 0.
VECTORS = {"[PAD]": [0, 0, 0, 1], "[UNK]": [0, 0, 0, 1], "[CLS]": [0, 0, 0, 1], "[SEP]": [0, 0, 0, 1],
           "good": [1, 0, 0, 0], "great": [0.99, 0.14, 0, 0], "fine": [0.6, 0.8, 0, 0],
           "the": [1, 0, 0, 0], "##s": [1, 0, 0, 0], "x": [1, 0, 0, 0], "g00d": [1, 0, 0, 0],
           "bad": [0, 0, 1, 0], "awful": [0, 0, 0.95, 0.3], "movie": [0, 1, 0, 0]}


def _embeddings(vectors: dict[str, list[float]]) -> torch.Tensor:
    return torch.tensor(list(vectors.values()), dtype=torch.float32)


@pytest.fixture
def bert_tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(VECTORS)}, do_lower_case=True)


def test_embedding_neighbours_on_wordpiece(bert_tokenizer):
    neighbours = embedding_neighbours(_embeddings(VECTORS), bert_tokenizer)
    assert neighbours.name == "embeddings"
    assert neighbours("good") == ["great", "fine"]  # not the stopword, ##s, x or g00d
    assert neighbours("Good") == ["Great", "Fine"]  # the lowercasing tokenizer finds "good"
    assert neighbours("GOOD") == ["GREAT", "FINE"]
    assert neighbours("bad") == ["awful"]
    assert neighbours("goods") == [] and neighbours("##s") == [] and neighbours("!") == []
    assert embedding_neighbours(_embeddings(VECTORS), bert_tokenizer, k=1)("good") == ["great"]
    assert embedding_neighbours(_embeddings(VECTORS), bert_tokenizer, min_similarity=0.7)("good") == ["great"]


class SpaceMarkedVocab:
    """A byte-level BPE vocabulary (GPT-2 style): whole words start with 'Ġ'; cased."""

    init_kwargs: dict = {}

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)


def test_embedding_neighbours_on_space_marked_bpe():
    vectors = {"Ġgood": [1, 0], "ĠGood": [1, 0], "Ġgreat": [0.9, 0.1], "great": [1, 0],
               "Ġthe": [1, 0], "Ġbad": [0, 1]}
    tokenizer = SpaceMarkedVocab({w: i for i, w in enumerate(vectors)})
    neighbours = embedding_neighbours(_embeddings(vectors), tokenizer)
    # ĠGood is the word itself in another case; "great" without the marker continues a word.
    assert neighbours("good") == ["great"]
    assert neighbours("Good") == ["Great"]
    assert neighbours("bad") == [] and neighbours("goodness") == []


class _Model:
    def __init__(self, weight: torch.Tensor) -> None:
        self.embedding = torch.nn.Embedding.from_pretrained(weight)

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.embedding


def test_load_synonyms_by_kind(tiny_wordnet, no_wordnet, bert_tokenizer, monkeypatch):
    model = _Model(_embeddings(VECTORS))
    assert load_synonyms("auto", model, bert_tokenizer)("good") == ["great", "fine"]
    assert load_synonyms("embeddings", model, bert_tokenizer).name == "embeddings"
    with pytest.raises(ValueError, match="pass a model, or install WordNet"):
        load_synonyms("auto")
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        load_synonyms("wordnet", model, bert_tokenizer)
    with pytest.raises(ValueError, match="'thesaurus': use one of auto, wordnet, embeddings"):
        load_synonyms("thesaurus")
    monkeypatch.setenv(syn.WORDNET_ENV, str(tiny_wordnet))
    assert load_synonyms("auto", model, bert_tokenizer)("good") == ["fine", "goodness", "well", "full"]


@pytest.mark.skipif(not Path("/usr/share/wordnet/index.noun").is_file(), reason="WordNet not installed")
def test_real_wordnet():
    synonyms = wordnet_synonyms("/usr/share/wordnet")
    assert "film" in synonyms("movie") and "movie" not in synonyms("movie")
    assert "bad" not in synonyms("good") and synonyms("good")
    assert "Film" in synonyms("Movies")
