"""Shared fixtures: a tiny synthetic parallel corpus that the tests generate themselves.

The "language pair" is learnable in seconds: the target is the source with every word replaced
through a fixed dictionary and the word order reversed, so a model that overfits it has learned
both lexical translation and reordering.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

# W&B must never reach the network or prompt in tests; caches stay inside the test session.
os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SRC_WORDS = "ein eine der die das mann frau hund katze sieht läuft spielt im park auf dem".split()


def translate_word(word: str) -> str:
    return word[::-1].upper()  # a deterministic "dictionary"


def make_pair(rng: random.Random, min_len: int = 2, max_len: int = 8) -> tuple[str, str]:
    words = [rng.choice(SRC_WORDS) for _ in range(rng.randint(min_len, max_len))]
    return " ".join(words), " ".join(translate_word(w) for w in reversed(words))


def write_corpus(
    directory: Path, sizes: dict[str, int], src: str = "de", tgt: str = "en", seed: int = 0
) -> Path:
    """Write ``{split}.{src}``/``{split}.{tgt}`` files with ``sizes[split]`` lines each."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        pairs = [make_pair(rng) for _ in range(n)]
        (directory / f"{split}.{src}").write_text("".join(s + "\n" for s, _ in pairs), "utf-8")
        (directory / f"{split}.{tgt}").write_text("".join(t + "\n" for _, t in pairs), "utf-8")
    return directory


TINY_SIZES = {"train": 400, "val": 30, "test_2016_flickr": 30}


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention tiny corpus shared by the whole session."""
    return write_corpus(tmp_path_factory.mktemp("tiny") / "corpus", TINY_SIZES)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # One cache per session (tests that need a fresh one pass cache_dir explicitly).
    monkeypatch.setenv("MT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mt-cache"))


def shared_data(corpus: str) -> Path:
    """``$MT_DATA_MIRROR/{corpus}``, or skip the test saying why."""
    mirror = os.environ.get("MT_DATA_MIRROR")
    if not mirror:
        pytest.skip("MT_DATA_MIRROR is not set: no local copy of the shared corpora")
    path = Path(mirror) / corpus
    if not path.is_dir():
        pytest.skip(f"{path} does not exist: the shared corpus {corpus} is not available")
    return path
