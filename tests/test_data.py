"""Tokenizer, corpus cache, token-budget sampler and data module."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_data

from mt.data.batching import (
    TokenBudgetBatchSampler,
    collate,
    cut_batches,
    decoding_batches,
    pad_sources,
)
from mt.data.corpora import DataError
from mt.data.datamodule import TranslationDataModule
from mt.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Tokenizer,
    TokenizerError,
    train_tokenizer,
)

# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_corpus: Path) -> Tokenizer:
    return train_tokenizer([tiny_corpus / "train.de", tiny_corpus / "train.en"], vocab_size=320)


def test_tokenizer_special_ids_and_round_trip(tokenizer: Tokenizer) -> None:
    assert tokenizer.vocab_size == 320
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    lines = ["der mann sieht die katze", "EIN DNUH", ""]
    ids = tokenizer.encode(lines)
    assert all(i not in (PAD_ID, BOS_ID, EOS_ID) for seq in ids for i in seq)
    assert tokenizer.decode(ids) == lines


def test_tokenizer_byte_fallback_never_unknown(tokenizer: Tokenizer) -> None:
    unseen = "Ψ 🙂 ñ — 漢字"
    ids = tokenizer.encode([unseen])[0]
    assert UNK_ID not in ids
    assert tokenizer.decode([ids]) == [unseen]


def test_tokenizer_decode_stops_at_eos_and_drops_specials(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(["der hund"])[0]
    assert tokenizer.decode([[BOS_ID, *ids, EOS_ID, *ids, PAD_ID]]) == ["der hund"]


def test_tokenizer_reload_from_bytes(tokenizer: Tokenizer) -> None:
    again = Tokenizer(tokenizer.model_proto)
    assert again.fingerprint == tokenizer.fingerprint
    assert again.encode(["die frau läuft"]) == tokenizer.encode(["die frau läuft"])
    with pytest.raises(TokenizerError, match="not a valid sentencepiece model"):
        Tokenizer(b"garbage")


def test_tokenizer_vocab_too_large_is_a_clear_error(tiny_corpus: Path) -> None:
    with pytest.raises(TokenizerError, match=r"vocab_size=5000.*smaller vocab_size"):
        train_tokenizer([tiny_corpus / "train.de"], vocab_size=5000)
    with pytest.raises(TokenizerError, match="too small"):
        train_tokenizer([tiny_corpus / "train.de"], vocab_size=100)


def test_tokenizer_vocab_too_small_for_the_characters_asks_for_a_larger_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    chars = [chr(0x4E00 + i) for i in range(600)]  # 600 distinct CJK characters
    text = tmp_path / "cjk.txt"
    text.write_text("".join("".join(rng.choice(chars, 20)) + "\n" for _ in range(2000)), "utf-8")
    with pytest.raises(TokenizerError) as err:
        train_tokenizer([text], vocab_size=300)
    assert "choose a larger vocab_size (>= " in str(err.value) and "smaller" not in str(err.value)


_TRAIN_IN_A_PROCESS = """
import os, sys
os.cpu_count = lambda: {cpus}  # the trainer must not depend on the machine's core count
from mt.data.tokenizer import train_tokenizer
tokenizer = train_tokenizer([{de!r}, {en!r}], vocab_size=320, model_type={kind!r})
sys.stdout.buffer.write(tokenizer.model_proto)
"""


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_tokenizer_is_a_pure_function_of_its_inputs(tiny_corpus: Path, kind: str) -> None:
    """Two processes (1 and 2 CPUs) train byte-identical models: the cache key pins the
    tokenizer, and nodes with separate caches train the same vocabulary."""
    files = {"de": str(tiny_corpus / "train.de"), "en": str(tiny_corpus / "train.en")}
    models = [
        subprocess.run(
            [sys.executable, "-c", _TRAIN_IN_A_PROCESS.format(cpus=cpus, kind=kind, **files)],
            capture_output=True, check=True, timeout=300,
        ).stdout
        for cpus in (1, 2)
    ]  # fmt: skip
    assert models[0] and models[0] == models[1]
    assert Tokenizer(models[0]).vocab_size == 320


def test_tokenizer_difference_is_described(tiny_corpus: Path) -> None:
    from mt.data.tokenizer import describe_difference

    files = [tiny_corpus / "train.de", tiny_corpus / "train.en"]
    unigram = train_tokenizer(files, vocab_size=300)
    bpe = train_tokenizer(files, vocab_size=300, model_type="bpe")
    described = describe_difference(unigram, bpe)
    assert described.startswith("300 pieces each, ") and " of the first 300 differ (first at id " in described
    assert describe_difference(unigram, train_tokenizer(files, vocab_size=310)).startswith("300 vs 310 pieces")


# --------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------


def random_lengths(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 60, size=n)
    tgt = np.clip(src + rng.integers(-5, 6, size=n), 1, None)
    return src, tgt


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_sampler_every_example_once_equal_counts_budget(replicas: int) -> None:
    src, tgt = random_lengths(1000)
    src[7] = 500  # one sentence longer than the whole budget
    budget = 256
    per_rank = [
        list(TokenBudgetBatchSampler(src, tgt, budget, seed=3, num_replicas=replicas, rank=r))
        for r in range(replicas)
    ]
    assert len({len(b) for b in per_rank}) == 1, "ranks got different numbers of batches"
    seen = sorted(i for batches in per_rank for batch in batches for i in batch)
    assert seen == list(range(1000))
    for batch in (b for batches in per_rank for b in batches):
        cost = len(batch) * (max(max(src[i], tgt[i]) for i in batch) + 1)
        assert cost <= budget or len(batch) == 1


def test_sampler_deterministic_per_seed_and_shuffled_per_epoch() -> None:
    src, tgt = random_lengths(500)
    a = TokenBudgetBatchSampler(src, tgt, 200, seed=1)
    b = TokenBudgetBatchSampler(src, tgt, 200, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert first != second and sorted(map(tuple, first)) == sorted(map(tuple, second))
    c = TokenBudgetBatchSampler(src, tgt, 200, seed=2)
    assert list(c) != first


def test_sampler_eval_order_is_not_shuffled() -> None:
    src, tgt = random_lengths(300)
    s = TokenBudgetBatchSampler(src, tgt, 300, shuffle=False)
    sizes = [max(max(src[i], tgt[i]) for i in b) for b in s]
    assert sizes == sorted(sizes)


def test_sampler_resume_mid_epoch_yields_exactly_the_rest() -> None:
    src, tgt = random_lengths(400)
    full = TokenBudgetBatchSampler(src, tgt, 200, seed=5)
    full.set_epoch(2)
    expected = list(full)

    s = TokenBudgetBatchSampler(src, tgt, 200, seed=5)
    s.set_epoch(2)
    it = iter(s)
    head = [next(it) for _ in range(7)]
    state = s.state_dict()
    assert state == {"epoch": 2, "position": 7, "seed": 5}

    resumed = TokenBudgetBatchSampler(src, tgt, 200, seed=5)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert head + rest == expected
    assert list(resumed) == expected  # the next pass over the same epoch starts from its beginning
    partial = iter(resumed)
    next(partial)
    assert list(resumed) == expected  # an abandoned pass does not shorten the next one


def test_sampler_fewer_examples_than_ranks_still_balanced() -> None:
    src, tgt = np.array([3]), np.array([4])
    per_rank = [list(TokenBudgetBatchSampler(src, tgt, 100, num_replicas=2, rank=r)) for r in (0, 1)]
    assert [len(b) for b in per_rank] == [1, 1]


def _greedy_running_max(sizes: list[int], max_tokens: int) -> list[list[int]]:
    """The cut written out naively: add while (rows + 1) x the largest size fits."""
    batches: list[list[int]] = []
    for i in range(len(sizes)):
        if batches and (len(batches[-1]) + 1) * max(sizes[j] for j in batches[-1] + [i]) <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@pytest.mark.parametrize("descending", [False, True])
def test_cut_batches_is_the_greedy_token_budget_cut(descending: bool) -> None:
    """Ascending sizes (training's sampler) and descending ones (decoding): the same greedy cut,
    every position once, in order; a size over the budget is a batch of its own."""
    rng = np.random.default_rng(0)
    for max_tokens in (1, 7, 40, 300):
        sizes = sorted(rng.integers(1, 60, size=200).tolist(), reverse=descending)
        cuts = cut_batches(np.array(sizes), max_tokens)
        batches = [list(range(len(sizes)))[cut] for cut in cuts]
        assert batches == _greedy_running_max(sizes, max_tokens)
        assert [i for b in batches for i in b] == list(range(len(sizes)))
    assert cut_batches([], 10) == []


def test_decoding_batches_longest_first_within_budget_and_padded_with_eos() -> None:
    lengths = [3, 9, 0, 9, 5, 1]
    batches = decoding_batches(lengths, max_tokens=20)
    assert [i for b in batches for i in b] == [1, 3, 4, 0, 5, 2]  # longest first, ties in order
    assert all(len(b) * (max(lengths[i] for i in b) + 1) <= 20 for b in batches if len(b) > 1)
    src = pad_sources([[5, 6], [7], []])
    assert src.tolist() == [[5, 6, EOS_ID], [7, EOS_ID, PAD_ID], [EOS_ID, PAD_ID, PAD_ID]]


def test_collate_shifts_and_masks() -> None:
    items = [(5, np.array([10, 11]), np.array([20, 21, 22]), "ref a"), (9, np.array([12]), np.array([23]), "ref b")]
    b = collate(items)
    assert b.src.tolist() == [[10, 11, EOS_ID], [12, EOS_ID, PAD_ID]]
    assert b.tgt_in.tolist() == [[BOS_ID, 20, 21, 22], [BOS_ID, 23, PAD_ID, PAD_ID]]
    assert b.tgt_out.tolist() == [[20, 21, 22, EOS_ID], [23, EOS_ID, PAD_ID, PAD_ID]]
    assert b.src_pad_mask.tolist() == [[False] * 3, [False, False, True]]
    assert b.indices.tolist() == [5, 9] and b.refs == ["ref a", "ref b"]
    assert (b.n_src_tokens, b.n_tgt_tokens) == (5, 6)
    # The counts are the host-side ones collate computed, kept through .to(): no device sync.
    moved = b.to("cpu")
    assert (moved.src_tokens, moved.tgt_tokens) == (5, 6)
    assert (int((~b.src_pad_mask).sum()), int((~b.tgt_pad_mask).sum())) == (5, 6)
    padded = collate(items, pad_to_multiple=8)
    assert padded.src.shape == (2, 8) and padded.tgt_in.shape == (2, 8)
    assert (padded.n_src_tokens, padded.n_tgt_tokens) == (5, 6)


# --------------------------------------------------------------------------------------------
# Data module
# --------------------------------------------------------------------------------------------


def make_dm(data_dir: Path, cache: Path, **kw: object) -> TranslationDataModule:
    args = dict(data_dir=str(data_dir), vocab_size=300, max_tokens=256, num_workers=0, cache_dir=str(cache))
    args.update(kw)
    return TranslationDataModule(**args)  # type: ignore[arg-type]


def test_datamodule_batches_keep_raw_references_and_indices(tiny_corpus: Path, tmp_path: Path) -> None:
    dm = make_dm(tiny_corpus, tmp_path)
    dm.setup("fit")
    refs = (tiny_corpus / "val.en").read_text("utf-8").splitlines()
    seen = {}
    for batch in dm.val_dataloader():
        for i, ref in zip(batch.indices.tolist(), batch.refs, strict=True):
            seen[i] = ref
        # the decoded target equals the reference (no truncation on evaluation sets)
        assert dm.tokenizer.decode(batch.tgt_out.tolist()) == batch.refs
    assert [seen[i] for i in range(len(refs))] == refs
    n_train = sum(len(b) for b in dm.train_dataloader())
    assert n_train == len(dm.train_indices) == 400


def test_datamodule_cache_reused_and_invalidated(tiny_corpus: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    cache = tmp_path / "cache"
    make_dm(data, cache).setup("fit")
    entries = sorted(p.name for p in cache.iterdir())
    make_dm(data, cache).setup("fit")
    assert sorted(p.name for p in cache.iterdir()) == entries  # second run: nothing new
    with open(data / "train.en", "a", encoding="utf-8") as f:
        f.write("KNUH ENIE\n")
    with open(data / "train.de", "a", encoding="utf-8") as f:
        f.write("eine hund\n")
    make_dm(data, cache).setup("fit")
    new = {p.name for p in cache.iterdir()} - set(entries)
    assert any(n.startswith("spm-") for n in new), "tokenizer not retrained after data changed"
    make_dm(data, cache, vocab_size=310).setup("fit")
    assert len([p for p in cache.iterdir() if p.name.startswith("spm-")]) == 3
    assert not [p for p in cache.iterdir() if p.name.startswith(".")], "temporary entries left"


def test_datamodule_filters_training_data_and_reports(tiny_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    with open(data / "train.de", "a", encoding="utf-8") as f:
        f.write("\n" + " ".join(["mann"] * 80) + "\nder\n")
    with open(data / "train.en", "a", encoding="utf-8") as f:
        f.write("NNAM\n" + " ".join(["NNAM"] * 80) + "\n" + " ".join(["RED"] * 30) + "\n")
    dm = make_dm(data, tmp_path / "cache", max_len=60)
    with caplog.at_level("INFO"):
        dm.setup("fit")
    assert "kept 400, removed 1 empty, 1 longer than max_len=60, 1 with length ratio" in caplog.text
    assert len(dm.train_indices) == 400


def test_datamodule_test_set_with_long_lines_is_not_filtered(tiny_corpus: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    long_src = " ".join(["mann"] * 100)
    for lang, text in (("de", long_src), ("en", "")):
        with open(data / f"test_2016_flickr.{lang}", "a", encoding="utf-8") as f:
            f.write(text + "\n")
    dm = make_dm(data, tmp_path / "cache", max_len=10)
    dm.setup("test")
    indices = sorted(i for b in dm.test_dataloader() for i in b.indices.tolist())
    assert indices == list(range(31))


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: (d / "val.en").unlink(), r"val\.en: no such file .*data\.val_split"),
        (lambda d: (d / "val.en").write_text("one line\n"), r"val\.de has 30 lines but .*val\.en has 1"),
        (lambda d: (d / "train.de").write_bytes(b"ok\nfine\nbad \xff byte\n" + b"x\n" * 397), r"train\.de:3: invalid UTF-8"),
        (lambda d: [(d / f"train.{x}").write_text("") for x in ("de", "en")], r"training set .*train\.de is empty"),
    ],
    ids=["missing-file", "line-mismatch", "invalid-utf8", "empty-train"],
)
def test_datamodule_bad_input(tiny_corpus: Path, tmp_path: Path, corrupt, message: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    corrupt(data)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=message):
        make_dm(data, cache).setup("fit")
    leftovers = [p for p in cache.rglob("*") if p.name.startswith(".")] if cache.exists() else []
    assert not leftovers, f"half-written cache entries: {leftovers}"


def test_datamodule_vocab_too_large(tiny_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"vocab_size=20000.*option data\.vocab_size"):
        make_dm(tiny_corpus, tmp_path, vocab_size=20000).setup("fit")


def test_datamodule_shards_over_ranks(tiny_corpus: Path, tmp_path: Path) -> None:
    dm = make_dm(tiny_corpus, tmp_path, max_tokens=64)
    dm.setup("fit")
    ranks = [dm.datasets["train"]]  # same data for every rank
    samplers = []
    for rank in range(2):
        s = TokenBudgetBatchSampler(
            ranks[0].src.lengths, ranks[0].tgt.lengths, 64, indices=dm.train_indices, num_replicas=2, rank=rank
        )
        samplers.append(list(s))
    assert len(samplers[0]) == len(samplers[1])
    assert sorted(i for s in samplers for b in s for i in b) == sorted(dm.train_indices.tolist())


def test_multi30k_for_real(tmp_path: Path) -> None:
    data = shared_data("multi30k")
    dm = TranslationDataModule(data_dir=str(data), vocab_size=8000, max_tokens=4096, num_workers=0, cache_dir=str(tmp_path))
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 29000 and len(dm.datasets["val"]) == 1014
    real = padded = 0
    for batch in dm.train_dataloader():
        assert max(batch.src.numel(), batch.tgt_out.numel()) <= 4096
        real += batch.n_src_tokens + batch.n_tgt_tokens
        padded += batch.src.numel() + batch.tgt_out.numel()
    assert real / padded >= 0.93  # the figure: >= 93% non-padding at 4096 tokens
    val_tgt = dm.datasets["val"].tgt  # the raw lines BLEU is computed against, in file order
    assert [val_tgt.text(i) for i in range(len(val_tgt))] == (data / "val.en").read_text("utf-8").splitlines()
    assert isinstance(next(iter(dm.val_dataloader())).src, torch.Tensor)


def test_check_text_file_counts_lines_across_read_boundaries(tmp_path: Path) -> None:
    from mt.data.corpora import check_text_file

    f = tmp_path / "t.txt"
    f.write_bytes("äöü\nß€\n\nno newline at end €".encode())
    for chunk in (1, 2, 3, 5, 1 << 20):
        assert check_text_file(f, chunk=chunk) == 4
    f.write_bytes("ok\nä\n".encode() + b"\xc3\n")  # a truncated 2-byte character on line 3
    for chunk in (1, 4, 1 << 20):
        with pytest.raises(DataError, match=r"t\.txt:3: invalid UTF-8"):
            check_text_file(f, chunk=chunk)
