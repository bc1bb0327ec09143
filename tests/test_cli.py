"""`mt` command line: shipped configs, config errors, fit -> validate/test -> checkpoint -> translate."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mt.module import CheckpointError, Seq2SeqModule, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
# The console script that `pip install` put beside this interpreter: what users run.
MT = Path(sys.executable).parent / "mt"


def mt(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed ``mt`` executable; with ``check``, fail unless it exits 0."""
    assert MT.is_file(), f"no installed mt executable at {MT}: run `make install`"
    proc = subprocess.run([str(MT), *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"mt {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_parses(config: Path) -> None:
    out = mt("fit", "--config", str(config), "--print_config").stdout
    resolved = yaml.safe_load(out)
    # vocab_size is linked from the data module, never configured twice
    assert "vocab_size" not in resolved["model"]["init_args"] and resolved["data"]["vocab_size"] > 0
    assert resolved["model"]["class_path"] == yaml.safe_load(config.read_text())["model"]["class_path"]


def test_model_help_lists_options() -> None:
    out = mt("fit", "--model.help", "mt.lstm.LSTMSeq2Seq").stdout
    assert "--model.attention" in out and "bahdanau" in out and "luong_general" in out


@pytest.mark.parametrize(
    "override, expected",
    [
        (["--model.init_args.atention", "bahdanau"], "atention"),
        (["--model.init_args.attention", "luong_concat"], "luong_concat"),
        (["--data.max_tokenz", "10"], "max_tokenz"),
    ],
    ids=["typo-model-key", "unknown-attention", "typo-data-key"],
)
def test_config_errors_name_the_key(override: list[str], expected: str) -> None:
    proc = mt("fit", "--config", "configs/lstm-small.yaml", *override, "--print_config", check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr
    if "attention" in override[0] and "atention" not in override[0]:
        assert "bahdanau" in proc.stderr and "luong_dot" in proc.stderr  # the allowed values


@pytest.mark.parametrize(
    "config, override, expected",
    [
        ("transformer-small", ["--data.max_tokens", "-5"], "data.max_tokens=-5: must be >= 1"),
        ("transformer-small", ["--model.init_args.dropout", "1.5"],
         "model.init_args.dropout=1.5: must be in [0, 1)"),
        ("lstm-small", ["--model.init_args.beam_size", "0"], "model.init_args.beam_size=0: must be >= 1"),
    ],
    ids=["data-max-tokens", "transformer-dropout", "lstm-beam-size"],
)  # fmt: skip
def test_values_out_of_range_are_one_line_errors_before_the_data(
    config: str, override: list[str], expected: str, tmp_path: Path
) -> None:
    proc = mt(
        "fit", "--config", f"configs/{config}.yaml", *override, "--trainer.logger", "false",
        "--data.data_dir", str(tmp_path / "nowhere"), check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"mt: error: {expected}\n" in proc.stderr
    assert "Traceback" not in proc.stderr and "nowhere" not in proc.stderr  # no data was read


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: mt.transformer.TransformerSeq2Seq\n  init_args: {d_model: 32\n"
                   "data:\n  vocab_size: 300\n")  # fmt: skip
    proc = mt("fit", "--config", "configs/transformer-small.yaml", "--config", str(bad), check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"mt: error: {bad} line 4, column 5: ")
    assert "flow mapping that starts at line 3, column 14" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "<unicode string>" not in proc.stderr


def test_config_for_the_wrong_class_is_rejected(tmp_path: Path) -> None:
    cfg = yaml.safe_load((ROOT / "configs/transformer-small.yaml").read_text())
    cfg["model"]["class_path"] = "mt.lstm.LSTMSeq2Seq"  # transformer arguments for an LSTM
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = mt("fit", "--config", str(bad), "--print_config", check=False)
    assert proc.returncode != 0 and "d_model" in proc.stderr


def tiny_overlay(tmp_path: Path, corpus: Path, model: str) -> Path:
    """Shrink a small config to seconds: tiny model, tiny corpus, a few steps."""
    sizes = (
        {"d_model": 32, "n_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 64}
        if model == "transformer"
        else {"embed_dim": 32, "hidden_size": 32, "encoder_layers": 1, "decoder_layers": 1}
    )
    overlay = {
        "trainer": {
            "max_steps": 6,
            "val_check_interval": 3,
            "limit_val_batches": 2,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path),
            "logger": {"class_path": "mt.cli.WandbLogger", "init_args": {"save_dir": str(tmp_path)}},
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(tmp_path / "ckpt"), "filename": "best",
                                  "monitor": "val/bleu", "mode": "max", "save_last": True},
                }
            ],
        },
        "model": {"init_args": sizes},
        "data": {"data_dir": str(corpus), "vocab_size": 300, "max_tokens": 512, "num_workers": 0},
    }
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_fit_then_validate_then_translate_from_checkpoint_alone(
    model: str, tiny_corpus: Path, tmp_path: Path
) -> None:
    configs = ["--config", f"configs/{model}-small.yaml", "--config", str(tiny_overlay(tmp_path, tiny_corpus, model))]
    fit = mt("fit", *configs)
    assert "BLEU" in fit.stdout + fit.stderr and "nrefs:1|case:mixed" in fit.stdout + fit.stderr
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.is_file() and (tmp_path / "ckpt" / "best.ckpt").is_file()

    val = mt("validate", *configs, "--ckpt_path", str(last))
    assert "val/bleu" in val.stdout
    # Each run of the installed executable exits 0 (`mt fit ... && mt test ...` must chain).
    test = mt("test", *configs, "--ckpt_path", str(last))
    assert "test/bleu" in test.stdout and "MTCLI object" not in test.stderr

    # The checkpoint alone rebuilds the right class with its tokenizer and translates.
    loaded = Seq2SeqModule.load_from_checkpoint(last)
    expected_cls = "TransformerSeq2Seq" if model == "transformer" else "LSTMSeq2Seq"
    assert type(loaded).__name__ == expected_cls
    assert loaded.tokenizer is not None and loaded.tokenizer.vocab_size == 300
    src = loaded.tokenizer.encode(["der mann sieht die katze"])[0] + [3]
    tokens = loaded.generate(torch.tensor([src]), torch.zeros(1, len(src), dtype=torch.bool))
    assert isinstance(loaded.tokenizer.decode(tokens)[0], str)
    again = load_checkpoint(last)
    assert torch.equal(next(again.parameters()), next(loaded.parameters()))


@pytest.fixture(scope="module")
def fitted(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    """A tiny transformer fitted once for this module's tests: (its config arguments, last.ckpt)."""
    tmp_path = tmp_path_factory.mktemp("fitted")
    overlay = tiny_overlay(tmp_path, tiny_corpus, "transformer")
    configs = ["--config", "configs/transformer-small.yaml", "--config", str(overlay)]
    mt("fit", *configs, "--data.cache_dir", str(tmp_path / "cache"))
    return configs, tmp_path / "ckpt" / "last.ckpt"


def test_test_with_a_checkpoint_and_an_empty_cache(fitted: tuple[list[str], Path], tmp_path: Path) -> None:
    """The README's `mt test --ckpt_path` on a machine whose cache is empty: the data is encoded
    with the checkpoint's own tokenizer, none is trained."""
    configs, ckpt = fitted
    cache = tmp_path / "empty-cache"
    test = mt("test", *configs, "--ckpt_path", str(ckpt), "--data.cache_dir", str(cache))
    assert "test/bleu" in test.stdout
    assert not [p.name for p in cache.iterdir() if p.name.startswith("spm-")]


def test_test_with_a_checkpoint_whose_tokenizer_the_data_would_not_train(
    fitted: tuple[list[str], Path], tiny_corpus: Path, tmp_path: Path
) -> None:
    """A checkpoint trained with another sentencepiece model than a fresh training here would
    give (another version, another machine) is evaluated with its own."""
    from mt.tokenizer import train_tokenizer

    configs, ckpt = fitted
    files = [tiny_corpus / "train.de", tiny_corpus / "train.en"]
    bpe = train_tokenizer(files, vocab_size=300, model_type="bpe")
    state = torch.load(ckpt, weights_only=True)
    state["mt_tokenizer"] = bpe.model_proto
    other = tmp_path / "other.ckpt"
    torch.save(state, other)
    cache = tmp_path / "cache"
    test = mt("test", *configs, "--ckpt_path", str(other), "--data.cache_dir", str(cache))
    assert "test/bleu" in test.stdout
    assert not [p.name for p in cache.iterdir() if p.name.startswith("spm-")]


@pytest.mark.parametrize("subcommand", ["test", "validate", "fit"])
def test_pickled_checkpoint_is_refused_in_one_line(
    subcommand: str, fitted: tuple[list[str], Path], tmp_path: Path
) -> None:
    """A zip-pickle (not weights-only) checkpoint: one line, exit 2, no advice to load it with
    weights_only=False (which would run whatever it holds)."""
    from fractions import Fraction

    configs, ckpt = fitted
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["label_smoothing"] = Fraction(1, 10)  # a pickled Python object
    pickled = tmp_path / "pickled.ckpt"
    torch.save(state, pickled)
    proc = mt(subcommand, *configs, "--ckpt_path", str(pickled), check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"mt: error: {pickled}: refusing to load: the checkpoint holds pickled Python objects" in proc.stderr
    assert "fractions.Fraction" in proc.stderr
    assert "weights_only=False" not in proc.stderr and "Traceback" not in proc.stderr


def test_checkpoint_naming_a_class_outside_mt_is_refused_before_import(
    fitted: tuple[list[str], Path], tmp_path: Path
) -> None:
    configs, ckpt = fitted
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["_class_path"] = "this.Model"  # importing `this` prints the Zen
    foreign = tmp_path / "foreign.ckpt"
    torch.save(state, foreign)
    proc = mt("test", *configs, "--ckpt_path", str(foreign), check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"mt: error: {foreign}: refusing to load the model class 'this.Model'" in proc.stderr
    assert "Beautiful is better than ugly" not in proc.stdout + proc.stderr


def test_checkpoint_of_another_model_class_than_the_config_is_refused(
    fitted: tuple[list[str], Path], tiny_corpus: Path, tmp_path: Path
) -> None:
    """A Transformer checkpoint with the LSTM's config (or the other way round) would silently
    run the checkpoint's model and file its results under the config's run name."""
    _, ckpt = fitted
    lstm = ["--config", "configs/lstm-small.yaml", "--config", str(tiny_overlay(tmp_path, tiny_corpus, "lstm"))]
    proc = mt("test", *lstm, "--ckpt_path", str(ckpt), check=False)
    assert proc.returncode == 2, proc.stderr
    assert (
        f"mt: error: {ckpt} holds a TransformerSeq2Seq model but the config's model is LSTMSeq2Seq"
    ) in proc.stderr
    assert "Traceback" not in proc.stderr
    # the same when --ckpt_path last finds it (LightningCLI does not read `last`'s hyperparameters)
    last = tmp_path / "ckpt" / "last.ckpt"
    last.parent.mkdir()
    shutil.copy(ckpt, last)
    proc = mt("fit", *lstm, "--ckpt_path", "last", check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"mt: error: {last} holds a TransformerSeq2Seq model but the config's model is LSTMSeq2Seq" in proc.stderr


def test_ckpt_path_last_without_a_checkpoint_is_one_line_error(tiny_corpus: Path, tmp_path: Path) -> None:
    overlay = tiny_overlay(tmp_path, tiny_corpus, "transformer")
    proc = mt("fit", "--config", "configs/transformer-small.yaml", "--config", str(overlay),
              "--ckpt_path", "last", check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "mt: error: --ckpt_path last: no checkpoint to resume" in proc.stderr
    assert "last_or_new" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "ckpt").exists()  # nothing started


def test_sigterm_during_fit_saves_a_checkpoint_and_fails(tiny_corpus: Path, tmp_path: Path) -> None:
    """`kill -TERM` during `mt fit`: a checkpoint, one line saying where, exit 143 (not 0).
    `--ckpt_path last_or_new` with no checkpoint yet starts a new run."""
    overlay = tiny_overlay(tmp_path, tiny_corpus, "transformer")
    args = [str(MT), "fit", "--config", "configs/transformer-small.yaml", "--config", str(overlay),
            "--trainer.max_steps", "100000", "--ckpt_path", "last_or_new"]  # fmt: skip
    last = tmp_path / "ckpt" / "last.ckpt"
    with subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            deadline = time.monotonic() + 300
            while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)  # the first validation wrote last.ckpt: the loop is running
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert "no checkpoint yet, starting a new run" in out + err
    (line,) = [x for x in err.splitlines() if x.startswith("[mt] stopped by SIGTERM")]
    assert line.endswith(f"checkpoint saved to {last} (resume with --ckpt_path last)")
    step = int(line.split(" at step ")[1].split(":")[0])
    assert torch.load(last, weights_only=True)["global_step"] == step


def test_missing_corpus_is_one_line_error(tmp_path: Path) -> None:
    proc = mt(
        "fit", "--config", "configs/transformer-small.yaml", "--data.data_dir", str(tmp_path / "nowhere"),
        "--trainer.logger", "false", check=False,
    )
    assert proc.returncode == 2
    assert "nowhere/train.de: no such file" in proc.stderr and "download_data.py" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_checkpoint_with_another_tokenizer_is_refused(tiny_corpus: Path, tmp_path: Path) -> None:
    """`--ckpt_path` restores after setup() took the data's tokenizer: a different sentencepiece
    model in the checkpoint (same vocab_size) must be an error, not silently swapped in."""
    from mt.tokenizer import train_tokenizer
    from mt.transformer import TransformerSeq2Seq

    files = [tiny_corpus / "train.de", tiny_corpus / "train.en"]
    data_tok = train_tokenizer(files, vocab_size=300)
    other_tok = train_tokenizer(files, vocab_size=300, model_type="bpe")
    model = TransformerSeq2Seq(vocab_size=300, d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32)
    model.tokenizer = data_tok
    model.on_load_checkpoint({"mt_tokenizer": data_tok.model_proto})  # the same model: fine
    with pytest.raises(CheckpointError, match=r"sentencepiece model differs .*\(300 pieces each, \d+ of"):
        model.on_load_checkpoint({"mt_tokenizer": other_tok.model_proto})
