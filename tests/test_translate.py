"""Tests for mt.tools.translate with a "copy model" (it reproduces its source) and a real tokenizer.

With a copy model the expected output of every line is known exactly: the line as the tokenizer
normalises it (``decode(encode(line))``), so line count, order and content can all be checked.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from mt.data.tokenizer import EOS_ID, Tokenizer, train_tokenizer
from mt.tools.translate import Translator, main, read_lines

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
WORDS = (
    "the a house cat dog river mountain small big green red blue runs sleeps eats quickly "
    "slowly and or but with without under over near far today tomorrow yesterday morning "
    "evening water bread city road train station window garden friend teacher student book"
).split()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    rng = random.Random(0)
    corpus = tmp_path_factory.mktemp("spm") / "corpus.txt"
    lines = []
    for _ in range(3000):
        words = rng.choices(WORDS, k=rng.randint(3, 15))
        lines.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ""]))
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return train_tokenizer([corpus], vocab_size=320)


@dataclass
class CopyState:
    src: Tensor  # (R, S)
    step: int

    def index_select(self, indices: Tensor, group: int = 1) -> CopyState:
        return CopyState(self.src.index_select(0, indices), self.step)


class CopyModel(nn.Module):
    """decode_step puts most probability on the source token at the current position (the
    source ends with EOS, so the copy ends too); the rest is spread almost evenly, slightly
    favouring higher ids (ordinary pieces over byte pieces) so that no two tokens tie and the
    beams differ.

    Raises ``RuntimeError("CUDA out of memory ...")`` when a step sees more than ``oom_above``
    rows, like a GPU that is too small.
    """

    def __init__(self, tokenizer: Tokenizer, oom_above: int | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.vocab_size
        self.oom_above = oom_above
        self.oom_count = 0
        self.batch_sizes: list[int] = []
        self.batch_shapes: list[tuple[int, int]] = []

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> CopyState:
        self.batch_sizes.append(src.size(0))
        self.batch_shapes.append((src.size(0), src.size(1)))
        return CopyState(src, 0)

    def decode_step(self, prev_tokens: Tensor, state: CopyState) -> tuple[Tensor, CopyState]:
        rows = prev_tokens.numel()
        if self.oom_above is not None and rows > self.oom_above:
            self.oom_count += 1
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if state.step < state.src.size(1):
            target = state.src[:, state.step]  # (R,)
        else:
            target = torch.full((rows,), EOS_ID, dtype=torch.long)
        logits = 1e-3 * torch.arange(self.vocab_size, dtype=torch.float32).repeat(rows, 1)
        logits[torch.arange(rows), target] = 8.0
        return torch.log_softmax(logits, dim=-1), CopyState(state.src, state.step + 1)


def normalised(tokenizer: Tokenizer, line: str) -> str:
    return tokenizer.decode(tokenizer.encode([line.strip()]))[0] if line.strip() else ""


def long_line(n_words: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choices(WORDS, k=n_words))


def run_main(model: nn.Module, *args: str) -> int:
    ckpt = Path(args[args.index("--checkpoint") + 1]) if "--checkpoint" in args else None
    if ckpt is not None and not ckpt.exists():
        ckpt.write_bytes(b"placeholder: the test loader returns the model")
    return main(list(args), loader=lambda path, map_location: model)


@pytest.fixture
def messy_input(tokenizer: Tokenizer, tmp_path: Path) -> tuple[Path, list[str]]:
    """A file with empty and whitespace-only lines, a 1000+ subword line, emoji, CRLF line ends
    and no newline at the end; returns the path and the lines as they should be read."""
    lines = [
        "The cat sleeps near the river.",
        "",
        "   ",
        "\t \u3000",
        long_line(260),
        "My friend eats bread \U0001f35e with \U0001f600 and \u00e9t\u00e9 ca\u0301f\u00e9!",
        "Tomorrow morning the train station",
        "",
        "a",
        "Yesterday the small dog runs slowly.",
    ]
    assert len(tokenizer.encode([lines[4]])[0]) >= 1000
    data = b""
    for i, line in enumerate(lines):
        end = b"\r\n" if i % 3 == 0 else b"\n"
        data += line.encode("utf-8") + (end if i < len(lines) - 1 else b"")
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    return path, lines


@pytest.mark.parametrize("beam_size", [1, 4])
def test_copy_keeps_lines_order_and_content(
    tokenizer: Tokenizer,
    messy_input: tuple[Path, list[str]],
    tmp_path: Path,
    beam_size: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, lines = messy_input
    out = tmp_path / "out.txt"
    model = CopyModel(tokenizer)
    rc = run_main(
        model,
        "--checkpoint", str(tmp_path / "model.ckpt"),
        "--input", str(path),
        "--output", str(out),
        "--beam-size", str(beam_size),
        "--max-tokens", "64",
        "--chunk-lines", "4",
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    data = out.read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    got = data.decode("utf-8").split("\n")[:-1]
    assert got == [normalised(tokenizer, line) for line in lines]
    assert got[1] == got[2] == got[3] == got[7] == ""
    assert "\U0001f600" in got[5]
    # empty lines never reach the model; batches respect the token budget except lone long lines
    assert sum(model.batch_sizes) == 6
    assert all(rows * width <= 64 or rows == 1 for rows, width in model.batch_shapes)
    err = capsys.readouterr().err
    assert "summary: 10 lines in, 10 lines out, 4 empty" in err


def test_nbest_format(tokenizer: Tokenizer, tmp_path: Path) -> None:
    lines = ["The cat sleeps.", "", "Big green mountain and the river"]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    rc = run_main(
        CopyModel(tokenizer),
        "--checkpoint", str(tmp_path / "m.ckpt"), "--input", str(path), "--output", str(out),
        "--beam-size", "4", "--nbest", "3", "--quiet",
    )  # fmt: skip
    assert rc == 0
    rows = [r.split(" ||| ") for r in out.read_text(encoding="utf-8").split("\n")[:-1]]
    assert len(rows) == 9
    assert [int(r[0]) for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for i, line in enumerate(lines):
        group = rows[3 * i : 3 * i + 3]
        assert all(len(r) == 3 for r in group)
        scores = [float(r[1]) for r in group]
        assert scores == sorted(scores, reverse=True)
        assert group[0][2] == normalised(tokenizer, line)
        if not line:
            assert all(r[2] == "" for r in group)
        else:
            assert len({r[2] for r in group}) == 3


def test_invalid_utf8_strict_and_replace(
    tokenizer: Tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"The cat.\nThe \xff dog \xc3.\nThe river.\n")
    out = tmp_path / "out.txt"
    common = ["--checkpoint", str(tmp_path / "m.ckpt"), "--input", str(path)]
    rc = run_main(CopyModel(tokenizer), *common, "--output", str(out), "--quiet")
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mt translate: error: {path} line 2: invalid UTF-8 (byte ff at byte 5")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    rc = run_main(
        CopyModel(tokenizer), *common, "--output", str(out), "--errors", "replace", "--quiet"
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert f"warning: {path} line 2: invalid UTF-8" in err
    got = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(got) == 3 and got[0] == "The cat." and got[2] == "The river."


def test_read_lines_splits_on_newline_only() -> None:
    data = "a\u2028b\r\nc\rd\n\ne\x85f".encode()
    assert list(read_lines(io.BytesIO(data), "x")) == ["a\u2028b", "c\rd", "", "e\x85f"]
    assert list(read_lines(io.BytesIO(b""), "x")) == []
    assert list(read_lines(io.BytesIO(b"\n"), "x")) == [""]


def test_max_input_tokens_splits_at_sentences_then_words(
    tokenizer: Tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sentences = [long_line(6, seed=s).capitalize() + p for s, p in enumerate(".!?;.")]
    splittable = " ".join(sentences)
    unsplittable = long_line(200, seed=9)  # no sentence punctuation at all
    lines = ["Short line.", splittable, "", unsplittable]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    limit = 50
    assert len(tokenizer.encode([splittable])[0]) > limit
    assert all(len(ids) <= limit for ids in tokenizer.encode(sentences))
    model = CopyModel(tokenizer)
    rc = run_main(
        model,
        "--checkpoint", str(tmp_path / "m.ckpt"), "--input", str(path), "--output", str(out),
        "--max-input-tokens", str(limit), "--beam-size", "2",
    )  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err
    assert "warning: line 2: " in err and "warning: line 4: " in err and "split into" in err
    assert "line 1:" not in err
    assert "2 split" in err
    got = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(got) == 4
    assert got[0] == "Short line."
    assert got[1] == normalised(tokenizer, splittable)  # pieces joined with a space
    assert got[3] == normalised(tokenizer, unsplittable)  # split between words: nothing cropped
    assert max(width for _, width in model.batch_shapes) <= limit + 1  # + EOS


def test_a_20000_word_line_is_split_not_shortened(
    tokenizer: Tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """By default a line longer than the model was trained on (its checkpoint's data.max_len)
    is split and its pieces' translations joined: one output line, nothing dropped, counted."""
    huge = long_line(20_000, seed=3)
    lines = ["The cat sleeps.", huge, ""]
    path, out = tmp_path / "in.txt", tmp_path / "out.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = CopyModel(tokenizer)
    model.trained_max_len = 256
    rc = run_main(
        model, "--checkpoint", str(tmp_path / "m.ckpt"), "--input", str(path),
        "--output", str(out), "--beam-size", "1",
    )  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err
    assert "summary: 3 lines in, 3 lines out, 1 empty, 1 split," in err
    assert "warning: line 2: " in err and "> --max-input-tokens 256: split into" in err
    got = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(got) == 3 and got[0] == "The cat sleeps." and got[2] == ""
    assert got[1] == normalised(tokenizer, huge)  # every word of the 20,000 is there
    assert max(width for _, width in model.batch_shapes) <= 257


def test_out_of_memory_is_retried_in_halves(tokenizer: Tokenizer) -> None:
    lines = [long_line(n, seed=n) for n in range(1, 12)]
    model = CopyModel(tokenizer, oom_above=4)  # beam 2: at most 2 sentences per batch
    translator = Translator(model, tokenizer, beam_size=2, max_tokens=100_000)
    got = translator.translate(lines)
    assert [t[0].text for t in got] == [normalised(tokenizer, line) for line in lines]
    assert model.oom_count > 0
    assert max(model.batch_sizes) == len(lines)  # the first try had them all


def test_out_of_memory_for_a_single_sentence_names_the_line(
    tokenizer: Tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "in.txt"
    path.write_text("ok\n\nThe cat sleeps.\n", encoding="utf-8")
    rc = run_main(
        CopyModel(tokenizer, oom_above=0),
        "--checkpoint", str(tmp_path / "m.ckpt"), "--input", str(path),
        "--output", str(tmp_path / "out.txt"), "--quiet",
    )  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("mt translate: error: line ") and "out of memory" in err
    assert "line 1:" in err or "line 3:" in err


def test_other_errors_are_not_taken_for_out_of_memory(tokenizer: Tokenizer) -> None:
    class Broken(CopyModel):
        def decode_step(self, prev_tokens: Tensor, state: CopyState) -> tuple[Tensor, CopyState]:
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        Translator(Broken(tokenizer), tokenizer).translate(["The cat."])


def test_stream_reads_in_chunks(tokenizer: Tokenizer) -> None:
    consumed = 0

    def lines():
        nonlocal consumed
        for i in range(25):
            consumed += 1
            yield f"The cat {i}." if i % 5 else ""

    class Recorder(io.StringIO):
        first_write_at: int | None = None

        def write(self, s: str) -> int:
            if self.first_write_at is None:
                self.first_write_at = consumed
            return super().write(s)

    out = Recorder()
    translator = Translator(CopyModel(tokenizer), tokenizer, beam_size=2)
    stats = translator.translate_stream(lines(), out, chunk_lines=10)
    assert out.first_write_at == 10
    got = out.getvalue().split("\n")[:-1]
    assert got == [f"The cat {i}." if i % 5 else "" for i in range(25)]
    assert (stats.lines_in, stats.lines_out, stats.empty, stats.sentences) == (25, 25, 5, 20)
    # A stream as ``progress`` gets tqdm's bar, ending at the sentences translated; a callable
    # gets the running count after every batch.
    bar, counts = io.StringIO(), []
    translator.translate_stream(iter(["A cat.", "", "The dog."]), io.StringIO(), progress=bar)
    assert bar.getvalue().rstrip().endswith("]") and "2 sentences [" in bar.getvalue()
    translator.translate_stream(iter(["A cat.", "", "The dog."]), io.StringIO(), progress=counts.append)
    assert counts and counts[-1] == 2 and counts == sorted(counts)


def test_stdin_to_stdout(
    tokenizer: Tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO("A cat.\r\n\nThe \U0001f600 dog\n".encode()))
    stdout_bytes = io.BytesIO()
    stdout = io.TextIOWrapper(stdout_bytes, encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    rc = run_main(CopyModel(tokenizer), "--checkpoint", str(tmp_path / "m.ckpt"), "--quiet")
    assert rc == 0
    assert stdout_bytes.getvalue().decode("utf-8") == "A cat.\n\nThe \U0001f600 dog\n"


def test_user_errors_are_one_line(tokenizer: Tokenizer, tmp_path: Path, capsys) -> None:
    model = CopyModel(tokenizer)
    rc = main(["--checkpoint", str(tmp_path / "missing.ckpt"), "--input", str(tmp_path)])
    assert rc == 2
    assert capsys.readouterr().err == f"mt translate: error: input file is a directory: {tmp_path}\n"
    existing = tmp_path / "in.txt"
    existing.write_text("x\n", encoding="utf-8")
    rc = main(["--checkpoint", str(tmp_path / "missing.ckpt"), "--input", str(existing)])
    assert rc == 2
    assert capsys.readouterr().err == f"mt translate: error: checkpoint not found: {tmp_path / 'missing.ckpt'}\n"
    rc = run_main(model, "--checkpoint", str(tmp_path / "m.ckpt"), "--input", "nope.txt")
    assert rc == 2
    assert capsys.readouterr().err == "mt translate: error: input file not found: nope.txt\n"
    rc = run_main(
        model, "--checkpoint", str(tmp_path / "m.ckpt"), "--input", str(existing),
        "--output", str(existing),
    )  # fmt: skip
    assert rc == 2 and "same file" in capsys.readouterr().err
    assert main(["--checkpoint", "x", "--beam-size", "2", "--nbest", "3"]) == 2  # before loading
    assert capsys.readouterr().err == "mt translate: error: --nbest must be between 1 and --beam_size\n"


def test_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("hello\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "translate.py"),
         "--checkpoint", str(tmp_path / "missing.ckpt"), "--input", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == f"mt translate: error: checkpoint not found: {tmp_path / 'missing.ckpt'}\n"
    assert proc.stdout == ""


def _write_checkpoint(path: Path, tokenizer: Tokenizer, max_len: int | None = None) -> None:
    """A tiny untrained Transformer saved the way training saves it (weights + hooks); with
    ``max_len``, the data module's hyperparameters say it was trained on at most that many
    subwords per sentence."""
    from mt.models.transformer import TransformerSeq2Seq

    torch.manual_seed(0)
    model = TransformerSeq2Seq(
        vocab_size=tokenizer.vocab_size,
        d_model=32,
        n_heads=2,
        encoder_layers=1,
        decoder_layers=1,
        ffn_dim=64,
        dropout=0.0,
    )
    model.tokenizer = tokenizer
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    if max_len is not None:
        ckpt["datamodule_hyper_parameters"] = {"max_len": max_len}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)


def test_script_with_a_real_checkpoint(tokenizer: Tokenizer, tmp_path: Path) -> None:
    ckpt = tmp_path / "tiny.ckpt"
    _write_checkpoint(ckpt, tokenizer)
    lines = ["The cat sleeps.", "", "  ", "Big \U0001f600 river", "a"]
    path = tmp_path / "in.txt"
    path.write_bytes("\r\n".join(lines).encode("utf-8"))
    out = tmp_path / "out.txt"
    script = [sys.executable, str(REPO / "scripts" / "translate.py"), "--checkpoint", str(ckpt)]
    proc = subprocess.run(
        [*script, "--input", str(path), "--output", str(out), "--beam-size", "3",
         "--nbest", "2", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "summary: 5 lines in, 10 lines out, 2 empty" in proc.stderr
    rows = [r.split(" ||| ") for r in out.read_text(encoding="utf-8").split("\n")[:-1]]
    assert [int(r[0]) for r in rows] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert rows[2][2] == rows[3][2] == rows[4][2] == rows[5][2] == ""


def test_script_splits_lines_longer_than_the_checkpoint_was_trained_on(
    tokenizer: Tokenizer, tmp_path: Path
) -> None:
    ckpt = tmp_path / "tiny.ckpt"
    _write_checkpoint(ckpt, tokenizer, max_len=32)
    path, out = tmp_path / "in.txt", tmp_path / "out.txt"
    path.write_text(f"The cat sleeps.\n{long_line(100, seed=4)}\n", encoding="utf-8")
    script = [sys.executable, str(REPO / "scripts" / "translate.py"), "--checkpoint", str(ckpt)]
    proc = subprocess.run(
        [*script, "--input", str(path), "--output", str(out), "--beam-size", "1", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "summary: 2 lines in, 2 lines out, 0 empty, 1 split," in proc.stderr
    assert "warning: line 2: " in proc.stderr and "--max-input-tokens 32" in proc.stderr
    assert out.read_text(encoding="utf-8").count("\n") == 2


def test_corrupt_checkpoint_is_one_line_error(
    tokenizer: Tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, corrupt = tmp_path / "tiny.ckpt", tmp_path / "corrupt.ckpt"
    _write_checkpoint(ckpt, tokenizer)
    corrupt.write_bytes(ckpt.read_bytes()[:1000])
    path = tmp_path / "in.txt"
    path.write_text("The cat.\n", encoding="utf-8")
    assert main(["--checkpoint", str(corrupt), "--input", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mt translate: error: ") and len(err.splitlines()) == 1
    assert str(corrupt) in err


# ------------------------------------------------------------------------- output never destroyed


def _translate_files(model: nn.Module, tmp_path: Path, src: Path, out: Path, *extra: str) -> int:
    return run_main(
        model,
        "--checkpoint", str(tmp_path / "m.ckpt"), "--input", str(src), "--output", str(out),
        "--beam-size", "1", "--quiet", *extra,
    )  # fmt: skip


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_output_linked_to_the_input_is_refused(
    tokenizer: Tokenizer, tmp_path: Path, link: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.txt"
    src.write_text("The cat sleeps.\nThe dog runs.\n", encoding="utf-8")
    out = tmp_path / "sub" / "out.txt"
    out.parent.mkdir()
    (out.hardlink_to if link == "hard" else out.symlink_to)(src)
    rc = _translate_files(CopyModel(tokenizer), tmp_path, src, out)
    assert rc == 2
    err = capsys.readouterr().err
    assert err == f"mt translate: error: --output is the same file as --input (same device and inode): {out}\n"
    assert src.read_text(encoding="utf-8") == "The cat sleeps.\nThe dog runs.\n"


def test_failed_run_leaves_the_earlier_output_untouched(
    tokenizer: Tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("The cat.\nThe dog.\n", encoding="utf-8")
    assert _translate_files(CopyModel(tokenizer), tmp_path, src, out) == 0
    good = out.read_bytes()
    assert good == b"The cat.\nThe dog.\n"
    src.write_bytes(b"The river.\n" * 5 + b"\xff\xfe binary\n")  # fails on line 6
    rc = _translate_files(CopyModel(tokenizer), tmp_path, src, out, "--chunk-lines", "2")
    assert rc == 2 and "line 6: invalid UTF-8" in capsys.readouterr().err
    assert out.read_bytes() == good
    assert _leftovers(tmp_path) == []


def test_output_follows_the_umask_and_keeps_a_symlink(tokenizer: Tokenizer, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("The cat.\n", encoding="utf-8")
    real, link = tmp_path / "real.txt", tmp_path / "link.txt"
    real.write_text("old\n", encoding="utf-8")
    real.chmod(0o640)
    link.symlink_to(real)
    assert _translate_files(CopyModel(tokenizer), tmp_path, src, link) == 0
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "The cat.\n"
    assert real.stat().st_mode & 0o777 == 0o640  # the replaced file's mode is kept
    old_mask = os.umask(0o027)
    try:
        new = tmp_path / "new.txt"
        assert _translate_files(CopyModel(tokenizer), tmp_path, src, new) == 0
    finally:
        os.umask(old_mask)
    assert new.stat().st_mode & 0o777 == 0o640  # 0o666 minus the umask, not mkstemp's 0o600


_KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from test_translate import CopyModel
from mt.data.tokenizer import Tokenizer
from mt.tools.translate import main

class DiesInTheThirdChunk(CopyModel):
    def encode(self, src, src_pad_mask):
        if len(self.batch_sizes) == 2:
            os.kill(os.getpid(), signal.{signal})
        return super().encode(src, src_pad_mask)

model = DiesInTheThirdChunk(Tokenizer.from_file({spm!r}))
sys.exit(main(sys.argv[1:], loader=lambda path, map_location: model))
"""


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_run_leaves_the_earlier_output_untouched(
    tokenizer: Tokenizer, tmp_path: Path, sig: str
) -> None:
    spm_file, src, out = tmp_path / "spm.model", tmp_path / "in.txt", tmp_path / "out.txt"
    spm_file.write_bytes(tokenizer.model_proto)
    src.write_text("".join(f"The cat {i}.\n" for i in range(10)), encoding="utf-8")
    (tmp_path / "m.ckpt").write_bytes(b"placeholder")
    out.write_text("an earlier complete translation\n", encoding="utf-8")
    code = _KILLED_RUN.format(tests=str(REPO / "tests"), spm=str(spm_file), signal=sig)
    proc = subprocess.run(
        [sys.executable, "-c", code, "--checkpoint", str(tmp_path / "m.ckpt"), "--input",
         str(src), "--output", str(out), "--beam-size", "1", "--chunk-lines", "3", "--quiet"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert out.read_text(encoding="utf-8") == "an earlier complete translation\n"
    if sig == "SIGTERM":  # caught: the temporary file is removed, the exit status says why
        assert proc.returncode == 143, proc.stderr
        assert proc.stderr == (
            "mt translate: error: stopped by SIGTERM before the translation was complete (an output file is "
            "not replaced)\n"
        )
        assert _leftovers(tmp_path) == []
        return
    assert proc.returncode == -9, proc.stderr
    # what was written before the kill sits in a hidden temporary file, not under the output name
    (partial,) = _leftovers(tmp_path)
    assert partial.startswith(".out.txt.")
    assert (tmp_path / partial).read_text(encoding="utf-8").count("\n") == 6


def test_output_folder_is_checked_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.txt"
    src.write_text("The cat.\n", encoding="utf-8")
    (tmp_path / "m.ckpt").write_bytes(b"placeholder")

    def loader(path: str, map_location: str) -> nn.Module:
        raise AssertionError("the model was loaded before the output path was checked")

    def run(output: Path) -> int:
        args = ["--checkpoint", str(tmp_path / "m.ckpt"), "--input", str(src)]
        return main([*args, "--output", str(output)], loader=loader)

    missing = tmp_path / "no-such-folder" / "out.txt"
    assert run(missing) == 2
    assert capsys.readouterr().err == (
        f"mt translate: error: --output {missing}: the folder {missing.parent} does not exist\n"
    )
    assert run(src / "out.txt") == 2
    assert capsys.readouterr().err == f"mt translate: error: --output {src / 'out.txt'}: the folder {src} is not a folder\n"
    assert run(tmp_path) == 2
    assert capsys.readouterr().err == f"mt translate: error: --output is a directory: {tmp_path}\n"

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("mt.tools.translate.tempfile.mkstemp", read_only)  # as root, chmod would not do
    assert run(tmp_path / "out.txt") == 2
    assert capsys.readouterr().err == (
        f"mt translate: error: --output {tmp_path / 'out.txt'}: cannot write to the folder {tmp_path} "
        "(Permission denied)\n"
    )
