"""A synthetic translation task whose sentence length and dependency distance are controlled.

Used to compare how the LSTM and the Transformer generalise to sentences longer than any seen in
training (``configs/synthetic-*.yaml``; data from ``scripts/make_synthetic.py``).

The grammar
-----------
The vocabularies are fixed pseudo-words (the same for every seed; only the sampled sentences
depend on the seed). Source words are lower case, target words upper case::

    source  := PARTICLE CLAUSE (CONJ CLAUSE)*
    CLAUSE  := NP VERB NP                       # subject, verb, object (SVO)
    NP      := DET? ADJ{0,2} NOUN

    target  := PARTICLE' CLAUSE'_m CONJ'_{m-1} CLAUSE'_{m-1} ... CONJ'_1 CLAUSE'_1 MARKER
    CLAUSE' := NP' NP' VERB'                    # subject, object, verb (SOV)

* **Lexical translation**: every source word has one target word (``DICTIONARY``).
* **Clause reordering**: the clauses appear in *reverse* order in the target, and inside each
  clause the verb moves to the end (SVO -> SOV). ``CONJ'_i`` is the translation of the
  conjunction that joined clauses ``i`` and ``i+1`` in the source, so conjunctions move with the
  clause boundaries.
* **Long-range agreement**: the first source word is a particle (one of :data:`PARTICLES`); the
  target starts with its translation and *ends* with the agreement marker ``MARKERS[particle]``,
  so the last target word depends on the first source word across the whole sentence (the
  dependency spans ``len(source)`` words on the source side and ``len(target) - 1`` words on the
  target side: it grows with the sentence).

The target is a function of the source (:func:`translate_source`), so a perfect system exists
and every generated pair can be checked. A source of ``L`` words (``L >= 4``) has ``m`` clauses
of 3-9 words joined by ``m - 1`` conjunctions (so ``L = sum_i (len(clause_i) + 1)``); its target
has ``L + 1`` words.

Splits
------
``train``: short sentences (default 4-12 words); ``val``: lengths spread over the full range
(default 4-60, so validation BLEU measures length generalisation); ``test``: the union of the
length bands (default 4-12, 13-20, 21-30, 31-40, 41-50, 51-60), each also written as
``test_len{a}-{b}``. Lengths are uniform within a range; no validation or test source sentence
occurs in the training data. Everything is deterministic given the seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DICTIONARY",
    "MARKERS",
    "PARTICLES",
    "SyntheticSpec",
    "agreement_marker",
    "generate",
    "parse_bands",
    "sample_source",
    "translate_source",
    "write_corpus",
]

#: Seed of the (fixed) vocabulary; independent of the data seed.
_LANGUAGE_SEED = 20240601
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"

PARTICLES: tuple[str, ...] = ("ja", "ne", "vo", "ku")
#: Agreement marker at the end of the target, per source particle.
MARKERS: dict[str, str] = {"ja": "<JA>", "ne": "<NE>", "vo": "<VO>", "ku": "<KU>"}
MIN_LENGTH = 4  # particle + one 3-word clause


def _make_words(rng: random.Random, n: int, syllables: int, taken: set[str]) -> list[str]:
    """``n`` distinct pseudo-words of ``syllables`` consonant-vowel syllables, not in ``taken``."""
    words: list[str] = []
    while len(words) < n:
        word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


def _build_lexicon() -> tuple[dict[str, list[str]], dict[str, str]]:
    """The source word classes and the source -> target dictionary (fixed, seed-independent)."""
    rng = random.Random(_LANGUAGE_SEED)
    taken = set(PARTICLES)
    classes = {
        "det": _make_words(rng, 4, 1, taken),
        "conj": _make_words(rng, 3, 2, taken),
        "adj": _make_words(rng, 24, 2, taken),
        "noun": _make_words(rng, 48, 3, taken),
        "verb": _make_words(rng, 32, 3, taken),
    }
    source_words = [w for ws in classes.values() for w in ws] + list(PARTICLES)
    target_taken: set[str] = set()
    dictionary: dict[str, str] = {}
    for word in source_words:
        syllables = max(1, len(word) // 2)
        dictionary[word] = _make_words(rng, 1, syllables, target_taken)[0].upper()
    return classes, dictionary


WORD_CLASSES, DICTIONARY = _build_lexicon()
_CLASS_OF = {w: c for c, ws in WORD_CLASSES.items() for w in ws}


def agreement_marker(first_source_word: str) -> str:
    """The marker that ends the target of a source starting with ``first_source_word``."""
    try:
        return MARKERS[first_source_word]
    except KeyError:
        raise ValueError(
            f"a source sentence starts with a particle {PARTICLES}, got {first_source_word!r}"
        ) from None


# -------------------------------------------------------------------------------- sampling


def _noun_phrase(rng: random.Random, length: int) -> list[str]:
    """A noun phrase of ``length`` (1-4) words: optional determiner, 0-2 adjectives, noun."""
    det = length == 4 or (length > 1 and rng.random() < 0.5)
    n_adj = length - 1 - int(det)
    return (
        [rng.choice(WORD_CLASSES["det"])] * int(det)
        + [rng.choice(WORD_CLASSES["adj"]) for _ in range(n_adj)]
        + [rng.choice(WORD_CLASSES["noun"])]
    )


def _clause(rng: random.Random, length: int) -> list[str]:
    """A clause of ``length`` (3-9) words: NP VERB NP."""
    extra = length - 3  # words beyond the two nouns and the verb, 0..6
    subj_extra = rng.randint(max(0, extra - 3), min(3, extra))
    subject = _noun_phrase(rng, 1 + subj_extra)
    obj = _noun_phrase(rng, 1 + extra - subj_extra)
    return [*subject, rng.choice(WORD_CLASSES["verb"]), *obj]


def sample_source(rng: random.Random, length: int) -> str:
    """A random source sentence of exactly ``length`` words (``length >= 4``)."""
    if length < MIN_LENGTH:
        raise ValueError(f"source sentences have at least {MIN_LENGTH} words, got {length}")
    # L = 1 + sum(len_i) + (m - 1) = sum(len_i + 1): split L into m parts of 4..10 words, each
    # a clause of 3..9 words plus its conjunction (the particle for the first clause).
    n_min, n_max = -(-length // 10), length // 4
    n_clauses = rng.randint(n_min, n_max)
    parts = [4] * n_clauses
    spare = length - 4 * n_clauses
    while spare:
        i = rng.randrange(n_clauses)
        if parts[i] < 10:
            parts[i] += 1
            spare -= 1
    words = [rng.choice(PARTICLES)]
    for i, part in enumerate(parts):
        if i:
            words.append(rng.choice(WORD_CLASSES["conj"]))
        words.extend(_clause(rng, part - 1))
    assert len(words) == length
    return " ".join(words)


# ----------------------------------------------------------------------------- translation


def _parse(source: str) -> tuple[str, list[list[str]], list[str]]:
    """Source -> (particle, clauses, conjunctions); raises ``ValueError`` off the grammar."""
    words = source.split()
    if len(words) < MIN_LENGTH:
        raise ValueError(f"too short for the grammar: {source!r}")
    particle, rest = words[0], words[1:]
    agreement_marker(particle)
    clauses: list[list[str]] = [[]]
    conjunctions: list[str] = []
    for word in rest:
        kind = _CLASS_OF.get(word)
        if kind is None:
            raise ValueError(f"unknown source word {word!r} in {source!r}")
        if kind == "conj":
            conjunctions.append(word)
            clauses.append([])
        else:
            clauses[-1].append(word)
    for clause in clauses:
        kinds = [_CLASS_OF[w] for w in clause]
        if kinds.count("verb") != 1 or kinds[-1] != "noun" or _CLASS_OF[clause[0]] == "verb":
            raise ValueError(f"not a clause (NP VERB NP): {' '.join(clause)!r} in {source!r}")
    return particle, clauses, conjunctions


def translate_source(source: str) -> str:
    """The reference translation of a source sentence of the grammar (see module docstring)."""
    particle, clauses, conjunctions = _parse(source)
    out = [DICTIONARY[particle]]
    for i in reversed(range(len(clauses))):
        clause = clauses[i]
        verb_at = next(j for j, w in enumerate(clause) if _CLASS_OF[w] == "verb")
        sov = clause[:verb_at] + clause[verb_at + 1 :] + [clause[verb_at]]
        out.extend(DICTIONARY[w] for w in sov)
        if i:
            out.append(DICTIONARY[conjunctions[i - 1]])
    out.append(agreement_marker(particle))
    return " ".join(out)


# -------------------------------------------------------------------------------- corpora


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and length ranges of a synthetic corpus (all ranges inclusive, in source words).

    Attributes:
        train_size: training pairs.
        val_size: validation pairs.
        test_per_band: test pairs per length band (``test`` has ``len(test_bands)`` times this).
        train_lengths: (min, max) source length of training sentences.
        val_lengths: (min, max) source length of validation sentences.
        test_bands: (min, max) source length of each test band.
        seed: seed of the sentence sampler.
    """

    train_size: int = 20000
    val_size: int = 500
    test_per_band: int = 200
    train_lengths: tuple[int, int] = (4, 12)
    val_lengths: tuple[int, int] = (4, 60)
    test_bands: tuple[tuple[int, int], ...] = field(
        default=((4, 12), (13, 20), (21, 30), (31, 40), (41, 50), (51, 60))
    )
    seed: int = 0

    def __post_init__(self) -> None:
        for lo, hi in (self.train_lengths, self.val_lengths, *self.test_bands):
            if not MIN_LENGTH <= lo <= hi:
                raise ValueError(f"length range ({lo}, {hi}) must satisfy {MIN_LENGTH} <= lo <= hi")
        if min(self.train_size, self.val_size, self.test_per_band) < 1:
            raise ValueError("split sizes must be >= 1")


def _sample_split(
    rng: random.Random, n: int, lengths: tuple[int, int], exclude: set[str]
) -> list[tuple[str, str]]:
    """``n`` (source, target) pairs with lengths uniform in ``lengths``, sources not in
    ``exclude`` (tries up to 100 n times, then fails rather than loop forever)."""
    pairs: list[tuple[str, str]] = []
    for _ in range(100 * n):
        if len(pairs) == n:
            break
        source = sample_source(rng, rng.randint(*lengths))
        if source not in exclude:
            pairs.append((source, translate_source(source)))
    if len(pairs) < n:
        raise ValueError(f"could not sample {n} new sentences with lengths {lengths}")
    return pairs


def generate(spec: SyntheticSpec) -> dict[str, list[tuple[str, str]]]:
    """All splits of ``spec``: ``train``, ``val``, ``test`` and ``test_len{a}-{b}`` per band."""
    rng = random.Random(spec.seed)
    train = _sample_split(rng, spec.train_size, spec.train_lengths, set())
    seen = {s for s, _ in train}
    splits = {"train": train, "val": _sample_split(rng, spec.val_size, spec.val_lengths, seen)}
    test: list[tuple[str, str]] = []
    for lo, hi in spec.test_bands:
        band = _sample_split(rng, spec.test_per_band, (lo, hi), seen)
        splits[f"test_len{lo}-{hi}"] = band
        test.extend(band)
    splits["test"] = test
    return splits


def write_corpus(
    out_dir: str | Path, spec: SyntheticSpec, src_lang: str = "src", tgt_lang: str = "tgt"
) -> dict[str, int]:
    """Write ``{out_dir}/{split}.{src_lang}`` and ``.{tgt_lang}`` for every split of
    :func:`generate`; returns the number of lines per split."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name, pairs in generate(spec).items():
        for side, lang in ((0, src_lang), (1, tgt_lang)):
            text = "".join(pair[side] + "\n" for pair in pairs)
            (out / f"{name}.{lang}").write_text(text, encoding="utf-8", newline="\n")
        counts[name] = len(pairs)
    return counts


def parse_bands(text: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """``["4-12", "13-20"]`` -> ``((4, 12), (13, 20))``; raises ``ValueError`` on bad input."""
    bands = []
    for item in text:
        lo, sep, hi = item.partition("-")
        if not sep or not lo.isdigit() or not hi.isdigit():
            raise ValueError(f"a length band is written LO-HI, e.g. 13-20; got {item!r}")
        bands.append((int(lo), int(hi)))
    return tuple(bands)
