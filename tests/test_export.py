"""CTranslate2 export (parity with mt's own search) and checkpoint averaging.

The models are tiny Transformers trained for a few dozen steps on the tiny corpus: enough that
they translate some lines right and stop at EOS, so that the parity checks compare real outputs
of several lengths rather than a random model's endless repetitions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, train_tokenizer
from mt.models.module import load_checkpoint
from mt.models.transformer import TransformerSeq2Seq
from mt.tools.export import (
    EXPORT_INFO,
    average_checkpoints,
    export_ctranslate2,
    supported_quantizations,
)
from mt.tools.translate import CTranslate2Translator, Translator

MT = Path(sys.executable).parent / "mt"
SIZE = dict(d_model=32, n_heads=2, encoder_layers=2, decoder_layers=2, ffn_dim=64, dropout=0.0)
# A difference of greedy choices is a tie when mt's two candidates are closer than this.
TIE = 1e-4


@pytest.fixture(scope="module")
def tokenizer(tiny_corpus: Path) -> Tokenizer:
    return train_tokenizer([tiny_corpus / "train.de", tiny_corpus / "train.en"], vocab_size=320)


@pytest.fixture(scope="module")
def trained(tokenizer: Tokenizer, tiny_corpus: Path) -> Callable[..., TransformerSeq2Seq]:
    """``trained(**options)``: the model ``train_tiny`` gives, trained once per options."""
    models: dict[tuple, TransformerSeq2Seq] = {}

    def get(**options: object) -> TransformerSeq2Seq:
        key = tuple(sorted(options.items()))
        if key not in models:
            models[key] = train_tiny(tokenizer, tiny_corpus, **options)
        return models[key]

    return get


def read(path: Path) -> list[str]:
    return path.read_text("utf-8").splitlines()


def train_tiny(
    tokenizer: Tokenizer, corpus: Path, seed: int = 0, steps: int = 60, **options: object
) -> TransformerSeq2Seq:
    """A tiny Transformer after ``steps`` AdamW steps of 32 training pairs (teacher forcing)."""
    torch.manual_seed(seed)
    model = TransformerSeq2Seq(vocab_size=tokenizer.vocab_size, **{**SIZE, **options})
    model.tokenizer = tokenizer
    src_ids = tokenizer.encode(read(corpus / "train.de"))
    tgt_ids = tokenizer.encode(read(corpus / "train.en"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        rows = [(step * 32 + i) % len(src_ids) for i in range(32)]
        src = pad([src_ids[r] + [EOS_ID] for r in rows])
        tgt_in = pad([[BOS_ID] + tgt_ids[r] for r in rows])
        tgt_out = pad([tgt_ids[r] + [EOS_ID] for r in rows])
        logits = model.decode(tgt_in, model.encode(src, src == PAD_ID))
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def pad(rows: list[list[int]]) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows], dtype=torch.long)


def save_checkpoint(model: TransformerSeq2Seq, path: Path, step: int = 0) -> Path:
    """Save ``model`` as training does: weights, hyperparameters, tokenizer, class."""
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
            "global_step": step}  # fmt: skip
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return path


def first_difference_is_a_tie(
    model: TransformerSeq2Seq, src: list[int], a: list[int], b: list[int]
) -> bool:
    """Whether two greedy outputs of one source first differ at a step where mt's model scores
    the two chosen tokens (nearly) equally: a tie that float rounding may break either way."""
    k = next(i for i in range(len(a) + 1) if i == len(a) or i == len(b) or a[i] != b[i])
    prefix = torch.tensor([[BOS_ID] + a[:k]])
    source = torch.tensor([src + [EOS_ID]])
    with torch.no_grad():
        logits = model.decode(prefix, model.encode(source, source == PAD_ID))  # (1, k + 1, V)
    log_probs = logits[0, -1].log_softmax(-1)
    token_a = a[k] if k < len(a) else EOS_ID
    token_b = b[k] if k < len(b) else EOS_ID
    return abs(float(log_probs[token_a] - log_probs[token_b])) < TIE


def greedy_lines(translator: Translator, lines: list[str]) -> list[str]:
    return [t[0].text for t in translator.translate(lines)]


@pytest.mark.parametrize(
    "options",
    [
        dict(norm="pre", share_embeddings=True, tie_output=True),
        dict(norm="post", share_embeddings=True, tie_output=True),
        dict(norm="pre", share_embeddings=False, tie_output=False),
        dict(norm="post", share_embeddings=False, tie_output=True, activation="gelu"),
    ],
    ids=["pre-shared-tied", "post-shared-tied", "pre-separate-untied", "post-separate-tied-gelu"],
)
def test_float32_export_gives_mt_greedy_output(
    tokenizer: Tokenizer, tiny_corpus: Path, trained, tmp_path: Path, options: dict
) -> None:
    model = trained(**options)
    export_ctranslate2(model, tmp_path / "ct2")
    lines = read(tiny_corpus / "test_2016_flickr.de")
    ours = greedy_lines(Translator(model, tokenizer, beam_size=1), lines)
    theirs = greedy_lines(CTranslate2Translator(tmp_path / "ct2", beam_size=1, threads=1), lines)
    assert len(theirs) == len(lines)
    assert len(set(ours)) > 5 and any(len(o.split()) < 20 for o in ours)  # real, varied outputs
    for line, a, b in zip(lines, ours, theirs, strict=True):
        if a != b:  # the outputs' ids again from their text (sentencepiece round-trips them)
            ids = tokenizer.encode([line, a, b])
            assert first_difference_is_a_tie(model, *ids), (line, a, b)
    assert sum(a == b for a, b in zip(ours, theirs, strict=True)) >= len(lines) - 2


@pytest.mark.parametrize("alpha, share", [(0.0, 0.95), (1.0, 0.8)])
def test_beam_search_agrees(
    tiny_corpus: Path, trained, tmp_path: Path, alpha: float, share: float
) -> None:
    """Beam 5: the same best hypothesis for nearly every line. Without a length penalty the two
    searches rank alike (all lines equal here, and 200 of 200 with the Multi30k
    transformer-small checkpoint); with one, CTranslate2's K hypotheses are re-ranked with mt's
    GNMT penalty (CTranslate2 divides by length ** alpha) and only the stopping rules differ:
    25 of 30 lines of this barely trained model, 195 of 200 with transformer-small."""
    model = trained(norm="pre", share_embeddings=True, tie_output=True)
    export_ctranslate2(model, tmp_path / "ct2")
    lines = read(tiny_corpus / "test_2016_flickr.de")
    options = dict(beam_size=5, length_penalty=alpha)
    ours = greedy_lines(Translator(model, model.tokenizer, **options), lines)
    theirs = greedy_lines(CTranslate2Translator(tmp_path / "ct2", threads=1, **options), lines)
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    assert same >= share * len(lines), list(zip(ours, theirs, strict=True))


def test_int8_export_translates_close_to_float32(
    tiny_corpus: Path, trained, tmp_path: Path
) -> None:
    model = trained(norm="pre", share_embeddings=True, tie_output=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_ctranslate2(model, tmp_path / "f32")
    export_ctranslate2(model, tmp_path / "int8", quantization="int8")
    for name, tensor in model.state_dict().items():  # quantizing left the model as it was
        assert torch.equal(tensor, before[name]), name
    info = json.loads((tmp_path / "int8" / EXPORT_INFO).read_text())
    assert info["quantization"] == "int8"
    size = {q: (tmp_path / q / "model.bin").stat().st_size for q in ("f32", "int8")}
    assert size["int8"] < 0.6 * size["f32"]
    lines = read(tiny_corpus / "test_2016_flickr.de")
    f32 = greedy_lines(CTranslate2Translator(tmp_path / "f32", beam_size=1, threads=1), lines)
    int8 = greedy_lines(CTranslate2Translator(tmp_path / "int8", beam_size=1, threads=1), lines)
    assert len(int8) == len(lines)
    assert sum(a == b for a, b in zip(f32, int8, strict=True)) >= len(lines) // 2


# -- the executables ----------------------------------------------------------------------------


def run_mt(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(MT), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def checkpoint(trained, tmp_path_factory) -> Path:
    model = trained(norm="pre", share_embeddings=True, tie_output=True)
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def test_mt_export_and_translate_keep_every_line(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "ct2"
    proc = run_mt("export", "--checkpoint", checkpoint, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert {"model.bin", "sentencepiece.model", EXPORT_INFO} <= {p.name for p in out.iterdir()}
    source = tmp_path / "in.de"
    long_line = " ".join(["der mann sieht die katze ."] * 6)
    source.write_bytes(f"ein hund\r\n\n   \nfrau im park\n{long_line}\n".encode())
    target = tmp_path / "out.en"
    proc = run_mt("translate", "--engine", "ctranslate2", "--model", out, "--input", source,
                  "--output", target, "--beam_size", "3", "--nbest", "2",
                  "--max_input_tokens", "8", "--threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "summary: 5 lines in, 10 lines out, 2 empty, 1 split" in proc.stderr
    rows = [r.split(" ||| ") for r in read(target)]
    assert [int(r[0]) for r in rows] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert rows[2][2] == rows[4][2] == "" and rows[0][2] != ""


def test_mt_translate_ctranslate2_bad_input_exits_2(checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.de"
    source.write_bytes(b"ein \xff hund\n")
    proc = run_mt("translate", "--engine", "ctranslate2", "--model", tmp_path / "missing",
                  "--input", source, "--output", tmp_path / "out")  # fmt: skip
    assert proc.returncode == 2 and "missing" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_mt("translate", "--engine", "ctranslate2", "--checkpoint", checkpoint,
                  "--input", source)  # fmt: skip
    assert proc.returncode == 2 and "--model" in proc.stderr
    out = tmp_path / "ct2"
    assert run_mt("export", "--checkpoint", checkpoint, "--out", out).returncode == 0
    proc = run_mt("translate", "--engine", "ctranslate2", "--model", out, "--input", source)
    assert proc.returncode == 2 and "invalid UTF-8" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_export_refuses_a_recurrent_checkpoint(tokenizer: Tokenizer, tmp_path: Path) -> None:
    from mt.models.rnn import RNNSeq2Seq

    model = RNNSeq2Seq(vocab_size=tokenizer.vocab_size, embed_dim=16, hidden_size=16)
    model.tokenizer = tokenizer
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "rnn.ckpt")
    proc = run_mt("export", "--checkpoint", tmp_path / "rnn.ckpt", "--out", tmp_path / "ct2")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "recurrent" in proc.stderr
    assert not (tmp_path / "ct2").exists()


def test_export_refuses_a_non_empty_out_without_force(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "ct2"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run_mt("export", "--checkpoint", checkpoint, "--out", out)
    assert proc.returncode == 2 and "--force" in proc.stderr and str(out) in proc.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    proc = run_mt("export", "--checkpoint", checkpoint, "--out", out, "--force", "--quantization",
                  "int8")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not (out / "keep.txt").exists() and (out / "model.bin").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["ct2"]  # no temporary folder left


def test_export_refuses_a_quantization_this_machine_cannot_run(
    checkpoint: Path, tmp_path: Path
) -> None:
    missing = [q for q in ("float16", "bfloat16", "int8_float16", "int16")
               if q not in supported_quantizations()]  # fmt: skip
    if not missing:
        pytest.skip("CTranslate2 runs every weight type on this machine")
    proc = run_mt("export", "--checkpoint", checkpoint, "--out", tmp_path / "ct2",
                  "--quantization", missing[0])  # fmt: skip
    assert proc.returncode == 2 and f"--quantization {missing[0]}" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# -- averaging ----------------------------------------------------------------------------------


def test_average_is_the_mean_of_the_tensors_and_translates(
    tokenizer: Tokenizer, tiny_corpus: Path, tmp_path: Path
) -> None:
    first = train_tiny(tokenizer, tiny_corpus, seed=0, steps=0)  # two initialisations
    second = train_tiny(tokenizer, tiny_corpus, seed=1, steps=0)
    paths = [save_checkpoint(first, tmp_path / "a.ckpt", 20),
             save_checkpoint(second, tmp_path / "b.ckpt", 40)]  # fmt: skip
    average_checkpoints(paths, tmp_path / "avg.ckpt")
    averaged = load_checkpoint(tmp_path / "avg.ckpt")
    for name, tensor in averaged.state_dict().items():
        expected = (first.state_dict()[name] + second.state_dict()[name]) / 2
        torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-7, msg=name)
    assert not torch.equal(averaged.src_embed.weight, first.src_embed.weight)
    lines = read(tiny_corpus / "test_2016_flickr.de")[:5]
    assert len(greedy_lines(Translator(averaged, averaged.tokenizer, beam_size=1), lines)) == 5
    export_ctranslate2(averaged, tmp_path / "ct2")  # an averaged checkpoint exports


def test_mt_average_last_n_of_a_run_folder(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    ckpt = torch.load(checkpoint, weights_only=True)
    for step in (10, 20, 30):
        torch.save({**ckpt, "global_step": step}, folder / f"step{step}.ckpt")
    torch.save({**ckpt, "global_step": 30}, folder / "last.ckpt")  # a copy: counted once
    proc = run_mt("average", "--last", "3", "--run_dir", tmp_path / "run", "--out",
                  tmp_path / "avg.ckpt")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "averaged 3 checkpoints" in proc.stdout
    saved = torch.load(tmp_path / "avg.ckpt", weights_only=True)
    names = [Path(p).name for p in saved["mt_averaged_from"]]
    assert names == ["step10.ckpt", "step20.ckpt", "last.ckpt"]  # oldest first
    proc = run_mt("average", "--last", "4", "--run_dir", tmp_path / "run", "--out",
                  tmp_path / "avg4.ckpt")  # fmt: skip
    assert proc.returncode == 2 and "--last 4" in proc.stderr


def test_mt_average_refuses_different_models_and_an_existing_out(
    tokenizer: Tokenizer, checkpoint: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    wider = TransformerSeq2Seq(vocab_size=tokenizer.vocab_size, **{**SIZE, "ffn_dim": 96})
    wider.tokenizer = tokenizer
    other = save_checkpoint(wider, tmp_path / "wider.ckpt")
    proc = run_mt("average", "--checkpoints", checkpoint, other, "--out", tmp_path / "avg.ckpt")
    assert proc.returncode == 2 and "ffn_dim=64 vs 96" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "avg.ckpt").exists()
    (tmp_path / "avg.ckpt").write_text("earlier")
    proc = run_mt("average", "--checkpoints", checkpoint, checkpoint, "--out",
                  tmp_path / "avg.ckpt")  # fmt: skip
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (tmp_path / "avg.ckpt").read_text() == "earlier"
