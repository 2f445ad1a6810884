"""Close substitutes for a word, for augmentation and robustness checks: WordNet's synonyms
when its database is installed (read straight from the wndb(5) files: no nltk), else the
nearest neighbours of the word in a model's input embeddings."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Protocol

# scikit-learn's ENGLISH_STOP_WORDS, copied: importing sklearn costs ~2 s (a test keeps them equal).
_SKLEARN_STOP_WORDS = """
a about above across after afterwards again against all almost alone along already also although
always am among amongst amoungst amount an and another any anyhow anyone anything anyway anywhere
are around as at back be became because become becomes becoming been before beforehand behind
being below beside besides between beyond bill both bottom but by call can cannot cant co con
could couldnt cry de describe detail do done down due during each eg eight either eleven else
elsewhere empty enough etc even ever every everyone everything everywhere except few fifteen fifty
fill find fire first five for former formerly forty found four from front full further get give
go had has hasnt have he hence her here hereafter hereby herein hereupon hers herself him himself
his how however hundred i ie if in inc indeed interest into is it its itself keep last latter
latterly least less ltd made many may me meanwhile might mill mine more moreover most mostly move
much must my myself name namely neither never nevertheless next nine no nobody none noone nor not
nothing now nowhere of off often on once one only onto or other others otherwise our ours
ourselves out over own part per perhaps please put rather re same see seem seemed seeming seems
serious several she should show side since sincere six sixty so some somehow someone something
sometime sometimes somewhere still such system take ten than that the their them themselves then
thence there thereafter thereby therefore therein thereupon these they thick thin third this those
though three through throughout thru thus to together too top toward towards twelve twenty two un
under until up upon us very via was we well were what whatever when whence whenever where
whereafter whereas whereby wherein whereupon wherever whether which while whither who whoever
whole whom whose why will with within without would yet you your yours yourself yourselves
"""
# Clitics as tokenizers split them ("does n't") and whole contractions as text has them.
_CONTRACTIONS = """
n't 's 'm 're 've 'll 'd ca wo ai don't doesn't didn't isn't aren't wasn't weren't can't
couldn't won't wouldn't shouldn't hasn't haven't hadn't mustn't needn't ain't i'm it's that's
there's what's let's he's she's you're we're they're i've you've we've they've i'll you'll he'll
she'll we'll they'll it'll i'd you'd he'd she'd we'd they'd dont doesnt didnt isnt arent wasnt
werent wont wouldnt shouldnt havent hadnt im ive
"""
STOPWORDS: frozenset[str] = frozenset(_SKLEARN_STOP_WORDS.split()) | frozenset(_CONTRACTIONS.split())

KINDS = ("auto", "wordnet", "embeddings")
WORDNET_ENV = "LMTUNE_WORDNET"
# Where packagers put WordNet's dict folder, then nltk's copy of it.
_WORDNET_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/local/WordNet-3.0/dict",
                 "/opt/homebrew/share/wordnet",
                 *(f"{base}/corpora/wordnet" for base in
                   ("~/nltk_data", "/usr/share/nltk_data", "/usr/local/share/nltk_data")))
WORDNET_ADVICE = (f"install WordNet (Debian/Ubuntu: apt-get install wordnet-base; macOS: brew install "
                  f"wordnet) or set {WORDNET_ENV} to a WordNet dict folder (with index.noun, data.noun)")
_INSTALL_HINT = f"{WORDNET_ADVICE}; or use --synonyms embeddings"


class Synonyms(Protocol):
    """Close substitutes for one word, best first, [] if none; never the word itself; the case
    follows the input word."""

    name: str

    def __call__(self, word: str) -> list[str]: ...


def follow_case(word: str, substitute: str) -> str:
    """Spell `substitute` in `word`'s case, so a replacement at a sentence start stays Title."""
    if len(word) > 1 and word.isupper():
        return substitute.upper()
    if word[:1].isupper():
        return substitute[:1].upper() + substitute[1:]
    return substitute


def _cased(word: str, found: list[str]) -> list[str]:
    return [follow_case(word, s) for s in found]


# ---- WordNet -------------------------------------------------------------------------------

_POS = ("noun", "verb", "adj", "adv")
_POS_OF_CHAR = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
# WordNet's morphy detachment rules: tried when a part of speech's index lacks the word itself.
_SUFFIXES = {
    "noun": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
             ("men", "man"), ("ies", "y")),
    "verb": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
             ("ing", "e"), ("ing", "")),
    "adj": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "adv": (),
}
_ADJ_MARKER = re.compile(r"\([a-z]+\)$")  # data.adj's syntactic markers: galore(ip)


def _is_wordnet(folder: Path) -> bool:
    return (folder / "index.noun").is_file() and (folder / "data.noun").is_file()


def wordnet_folder() -> Path | None:
    """Where WordNet's dict files are ($LMTUNE_WORDNET first, then the usual install places),
    or None."""
    env = os.environ.get(WORDNET_ENV)
    for place in ([env] if env else []) + list(_WORDNET_DIRS):
        folder = Path(place).expanduser()
        if _is_wordnet(folder):
            return folder
    return None


class _WordNet:
    """The parsed database: index lines by lemma, data files as bytes read at synset offsets."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index: dict[str, dict[str, str]] = {}
        self.data: dict[str, bytes] = {}
        self.exceptions: dict[str, dict[str, list[str]]] = {}
        for pos in _POS:
            index, data = folder / f"index.{pos}", folder / f"data.{pos}"
            if index.is_file() and data.is_file():
                # License lines start with spaces; every other line starts with its lemma.
                self.index[pos] = {line[:line.find(" ")]: line for line in
                                   index.read_text(encoding="utf-8", errors="replace").splitlines()
                                   if line and not line.startswith(" ")}
                self.data[pos] = data.read_bytes()
            exc = folder / f"{pos}.exc"
            lines = exc.read_text(encoding="utf-8", errors="replace").splitlines() if exc.is_file() else []
            self.exceptions[pos] = {f[0]: f[1:] for f in map(str.split, lines) if len(f) > 1}

    def entry(self, pos: str, lemma: str) -> tuple[list[int], int]:
        """The lemma's synsets, most frequent sense first (the index lists them so), and how many
        of its senses the concordances tagged (how common the lemma is in this part of speech)."""
        fields = self.index[pos][lemma].split()
        count = int(fields[2])
        return [int(f) for f in fields[len(fields) - count:]], int(fields[len(fields) - count - 1])

    def synset(self, pos: str, offset: int) -> tuple[list[str], list[tuple[str, int]]]:
        """The synset's lemmas, and its antonym pointers as (part of speech, offset)."""
        data = self.data[pos]
        line = data[offset:data.find(b"\n", offset)].decode("utf-8", errors="replace")
        fields = line.split()
        if not fields or fields[0] != f"{offset:08d}":
            raise ValueError(f"{self.folder / f'data.{pos}'}: no synset at byte {offset} (its index "
                             f"says there is one): not an intact WordNet dict folder; reinstall it")
        count = int(fields[3], 16)
        lemmas = [_ADJ_MARKER.sub("", w) for w in fields[4:4 + 2 * count:2]]
        at = 4 + 2 * count
        pointers = [fields[at + 1 + 4 * i: at + 5 + 4 * i] for i in range(int(fields[at]))]
        antonyms = [(_POS_OF_CHAR[p[2]], int(p[1])) for p in pointers if p[0] == "!"]
        return lemmas, antonyms

    def forms(self, pos: str, word: str) -> list[str]:
        """The word itself when the index has it, else its base forms that the index has."""
        index = self.index.get(pos, {})
        if word in index:
            return [word]
        bases = list(self.exceptions[pos].get(word, []))
        bases += [word[:-len(end)] + base for end, base in _SUFFIXES[pos] if word.endswith(end)]
        return [b for b in dict.fromkeys(bases) if b in index]


@functools.lru_cache(maxsize=4)
def _load_wordnet(folder: Path) -> _WordNet:
    return _WordNet(folder)


class WordNetSynonyms:
    """Lemmas of the word's first `senses` synsets in each part of speech, earlier senses first."""

    name = "wordnet"

    def __init__(self, folder: Path, senses: int) -> None:
        self.folder, self.senses = folder, senses
        self._cache: dict[str, list[str]] = {}

    def __call__(self, word: str) -> list[str]:
        key = word.lower()
        if key not in self._cache:
            self._cache[key] = self._lookup(key)
        return _cased(word, self._cache[key])

    def _lookup(self, word: str) -> list[str]:
        wordnet = _load_wordnet(self.folder)
        hits = [(pos, form, *wordnet.entry(pos, form)) for pos in _POS for form in wordnet.forms(pos, word)]
        # The word's own entries before its base forms', then its commonest part of speech first.
        hits.sort(key=lambda hit: (hit[1] != word, -hit[3]))
        senses = [(pos, offsets) for pos, _, offsets, _ in hits]
        found: list[str] = []
        excluded = {word} | {hit[1] for hit in hits}
        for rank in range(self.senses):
            for pos, offsets in senses:
                if rank < len(offsets):
                    lemmas, antonyms = wordnet.synset(pos, offsets[rank])
                    found += lemmas
                    for target in antonyms:
                        excluded.update(lemma.lower() for lemma in wordnet.synset(*target)[0])
        unique = {lemma.lower(): lemma for lemma in reversed(found)}  # first spelling wins
        return [unique[k] for k in dict.fromkeys(l.lower() for l in found)
                if k not in excluded and "_" not in k]


def wordnet_synonyms(folder: str | Path | None = None, senses: int = 2) -> Synonyms:
    """WordNet synonyms from `folder` (default: wordnet_folder()); the database is parsed once per
    process, on the first lookup."""
    if senses < 1:
        raise ValueError(f"senses={senses}: give 1 or more (how many of a word's senses to use)")
    if folder is None:
        found = wordnet_folder()
        if found is None:
            env = os.environ.get(WORDNET_ENV)
            where = f"{WORDNET_ENV}={env} has no index.noun and data.noun" if env else \
                f"looked in {', '.join(_WORDNET_DIRS)}"
            raise FileNotFoundError(f"WordNet is not installed ({where}): {_INSTALL_HINT}")
        folder = found
    folder = Path(folder).expanduser().resolve()
    if not _is_wordnet(folder):
        raise FileNotFoundError(f"{folder}: not a WordNet dict folder (it needs index.noun and "
                                f"data.noun): {_INSTALL_HINT}")
    return WordNetSynonyms(folder, senses)


# ---- embedding neighbours ------------------------------------------------------------------

_WORD_START_MARKERS = ("Ġ", "▁")  # byte-level BPE (GPT-2, Llama 3), sentencepiece (Llama 2, T5)


def _word_start_marker(vocab: dict[str, int]) -> str | None:
    """The marker that starts whole-word tokens, or None for WordPiece (where '##' continues)."""
    counts = {m: sum(token.startswith(m) for token in vocab) for m in _WORD_START_MARKERS}
    marker = max(counts, key=counts.__getitem__)
    return marker if counts[marker] * 5 >= len(vocab) else None


def _whole_words(vocab: dict[str, int], marker: str | None) -> dict[str, int]:
    """Whole-word tokens as plain words -> token id."""
    if marker is None:
        return {t: i for t, i in vocab.items() if not t.startswith("##")}
    return {t[len(marker):]: i for t, i in vocab.items() if t.startswith(marker) and len(t) > len(marker)}


def _lowercases(tokenizer: Any) -> bool:
    flag = getattr(tokenizer, "do_lower_case", None)
    if flag is None:
        flag = (getattr(tokenizer, "init_kwargs", None) or {}).get("do_lower_case")
    return bool(flag)


class EmbeddingNeighbours:
    """The words whose input embeddings are closest (cosine) to the word's own."""

    name = "embeddings"

    def __init__(self, embeddings: Any, tokenizer: Any, k: int, min_similarity: float) -> None:
        import torch

        self.k, self.min_similarity = k, min_similarity
        self.lowercase = _lowercases(tokenizer)
        vocab = tokenizer.get_vocab()
        self.words = {w: i for w, i in _whole_words(vocab, _word_start_marker(vocab)).items()
                      if i < embeddings.shape[0]}  # ids past the matrix: tokens added, not resized
        self.candidates = [w for w in self.words
                           if w.isalpha() and len(w) >= 2 and w.lower() not in STOPWORDS]
        ids = torch.tensor([self.words[w] for w in self.candidates], dtype=torch.long)
        # A copy: neighbours must not drift while training moves the live weights (a resumed run
        # would draw other synonyms).
        weight = embeddings.detach().float().cpu().clone()
        self.matrix = torch.nn.functional.normalize(weight[ids], dim=1)
        self.queries = weight  # rows of words outside the candidates (a stopword) are asked too
        self._cache: dict[str, list[str]] = {}

    def __call__(self, word: str) -> list[str]:
        key = word.lower() if self.lowercase else word
        if key not in self.words and key.lower() in self.words:
            key = key.lower()
        if key not in self._cache:
            self._cache[key] = self._lookup(key) if key in self.words and key.isalpha() else []
        return _cased(word, self._cache[key])

    def _lookup(self, word: str) -> list[str]:
        import torch

        query = self.queries[self.words[word]]
        scores = self.matrix @ torch.nn.functional.normalize(query, dim=0)  # [candidates]
        # Extra room: the word's own case variants and duplicate spellings are dropped below.
        top = torch.topk(scores, min(len(self.candidates), 3 * self.k + 5))
        found: dict[str, str] = {}
        for score, at in zip(top.values.tolist(), top.indices.tolist()):
            candidate = self.candidates[at]
            if score < self.min_similarity or len(found) == self.k:
                break
            if candidate.lower() != word.lower():
                found.setdefault(candidate.lower(), candidate)
        return list(found.values())


def embedding_neighbours(embeddings: Any, tokenizer: Any, k: int = 10,
                         min_similarity: float = 0.5) -> Synonyms:
    """Nearest whole-word neighbours in an input embedding matrix [vocab, hidden] (pass
    model.get_input_embeddings().weight): substitutes in any language the model knows, no
    WordNet needed."""
    if k < 1:
        raise ValueError(f"k={k}: give 1 or more (how many neighbours to return)")
    return EmbeddingNeighbours(embeddings, tokenizer, k, min_similarity)


def load_synonyms(kind: str, model: Any = None, tokenizer: Any = None) -> Synonyms:
    """Synonyms by kind: auto (WordNet when installed, else the model's embedding neighbours),
    wordnet, or embeddings."""
    if kind not in KINDS:
        raise ValueError(f"unknown synonyms {kind!r}: use one of {', '.join(KINDS)}")
    if kind == "wordnet" or (kind == "auto" and wordnet_folder() is not None):
        return wordnet_synonyms()
    if model is None or tokenizer is None:
        raise ValueError(f"--synonyms {kind} needs a model and its tokenizer for embedding "
                         f"neighbours: pass a model, or {WORDNET_ADVICE}")
    return embedding_neighbours(model.get_input_embeddings().weight, tokenizer)
