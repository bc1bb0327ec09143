"""`mt` command line: shipped configs, config errors, fit -> validate/test -> checkpoint -> translate."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_corpus

from mt.models.module import CheckpointError, Seq2SeqModule, load_checkpoint
from mt.precision import resolve_precision

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


BASE = ROOT / "configs" / "base.yaml"
MODEL_CONFIGS = [c for c in CONFIGS if c != BASE]


@pytest.mark.parametrize("config", MODEL_CONFIGS, ids=[c.stem for c in MODEL_CONFIGS])
def test_every_shipped_config_parses(config: Path) -> None:
    """Each per-model config, alone (layered over base.yaml by `mt`) or after an explicit
    `--config configs/base.yaml`, resolves to the same complete config with no output paths."""
    alone = mt("fit", "--config", str(config), "--print_config").stdout
    if config.stem == "lstm-small":  # (one is enough: the same code layers every config)
        explicit = mt("fit", "--config", str(BASE), "--config", str(config), "--print_config").stdout
        assert alone == explicit
    resolved = yaml.safe_load(alone)
    # vocab_size is linked from the data module, never configured twice: the config's own value,
    # else base.yaml's
    own_data = yaml.safe_load(config.read_text()).get("data") or {}
    vocab_size = own_data.get("vocab_size", yaml.safe_load(BASE.read_text())["data"]["vocab_size"])
    assert "vocab_size" not in resolved["model"]["init_args"] and resolved["data"]["vocab_size"] == vocab_size
    assert resolved["model"]["class_path"] == yaml.safe_load(config.read_text())["model"]["class_path"]
    # the shared parts come from base.yaml; the run folder, not the config, places every output
    (checkpoint,) = [c for c in resolved["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert checkpoint["init_args"]["monitor"] == "val/bleu" and checkpoint["init_args"]["dirpath"] is None
    loggers = [lg["class_path"].rsplit(".", 1)[-1] for lg in resolved["trainer"]["logger"]]
    assert loggers == ["WandbLogger", "CSVLogger"]
    assert resolved["trainer"]["default_root_dir"] is None
    assert "runs/" not in yaml.safe_dump(yaml.safe_load(config.read_text()))


def test_base_config_parses_alone() -> None:
    resolved = yaml.safe_load(mt("fit", "--config", str(BASE), "--print_config").stdout)
    assert resolved["model"] is None and resolved["data"]["data_dir"] == "data/multi30k"


def test_model_help_lists_options() -> None:
    out = mt("fit", "--model.help", "mt.models.lstm.LSTMSeq2Seq").stdout
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
    assert proc.returncode == 2
    assert_one_line_error(proc, expected)
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
    bad.write_text("model:\n  class_path: mt.models.transformer.TransformerSeq2Seq\n  init_args: {d_model: 32\n"
                   "data:\n  vocab_size: 300\n")  # fmt: skip
    proc = mt("fit", "--config", "configs/transformer-small.yaml", "--config", str(bad), check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"mt: error: {bad} line 4, column 5: ")
    assert "flow mapping that starts at line 3, column 14" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "<unicode string>" not in proc.stderr
def assert_one_line_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    """Exit status 2 and a single `mt: error: ...` line on stderr that names ``expected``."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("mt") and ": error: " in lines[-1], proc.stderr  # mt (translate):
    assert expected in lines[-1], proc.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["fitt"], "fitt"),
        (["fit", "--config", "configs/lstm-small.yaml", "--trainer.max_stepz", "3"], "max_stepz"),
        (["test", "--config", "configs/lstm-small.yaml", "--ckpt_pth", "x"], "ckpt_pth"),
        (["fit", "--config", "configs/nowhere.yaml"], "nowhere.yaml"),
    ],
    ids=["unknown-subcommand", "misspelt-option", "misspelt-test-option", "missing-config"],
)
def test_bad_command_lines_are_one_line_errors(args: list[str], expected: str) -> None:
    assert_one_line_error(mt(*args, check=False), expected)


def test_unknown_key_in_a_config_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_stepz: 3\n")
    proc = mt("fit", "--config", "configs/lstm-small.yaml", "--config", str(bad), "--print_config", check=False)
    assert_one_line_error(proc, "max_stepz")


def test_config_for_the_wrong_class_is_rejected(tmp_path: Path) -> None:
    cfg = yaml.safe_load((ROOT / "configs/transformer-small.yaml").read_text())
    cfg["model"]["class_path"] = "mt.models.lstm.LSTMSeq2Seq"  # transformer arguments for an LSTM
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = mt("fit", "--config", str(bad), "--print_config", check=False)
    assert proc.returncode != 0 and "d_model" in proc.stderr


def tiny_overlay(tmp_path: Path, corpus: Path, model: str, run_folder: bool = False) -> Path:
    """Shrink a small config to seconds: tiny model, tiny corpus, a few steps; outputs under
    ``tmp_path`` (checkpoints in ``tmp_path/ckpt``), or with ``run_folder`` where the run
    folder rules put them (base.yaml's loggers and callbacks)."""
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
    if run_folder:
        for key in ("default_root_dir", "logger", "callbacks"):
            del overlay["trainer"][key]
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
    # One line per validation (steps 3 and 6), then the best score and its checkpoint.
    val_lines = [line for line in fit.stdout.splitlines() if line.startswith("[mt] val: BLEU = ")]
    assert [line.rsplit("[step ", 1)[-1] for line in val_lines] == ["3]", "6]"], fit.stdout
    assert "[mt] best val/bleu = " in fit.stderr and str(tmp_path / "ckpt" / "best.ckpt") in fit.stderr
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.is_file() and (tmp_path / "ckpt" / "best.ckpt").is_file()

    # precision null: chosen for this machine, said in one line (mt/precision.py).
    val = mt("validate", *configs, "--ckpt_path", str(last), "--trainer.precision", "null")
    assert "val/bleu" in val.stdout
    chosen, _ = resolve_precision(None, "auto")
    assert f"[mt] precision: {chosen} (" in val.stderr
    # Each run of the installed executable exits 0 (`mt fit ... && mt test ...` must chain).
    test = mt("test", *configs, "--ckpt_path", str(last))
    assert "test/bleu" in test.stdout and "MTCLI object" not in test.stderr

    # The checkpoint alone rebuilds the right class with its tokenizer and translates.
    loaded = Seq2SeqModule.load_from_checkpoint(last)
    expected_cls = "TransformerSeq2Seq" if model == "transformer" else "LSTMSeq2Seq"
    assert type(loaded).__name__ == expected_cls
    assert loaded.tokenizer is not None and loaded.tokenizer.vocab_size == 300
    line = "der mann sieht die katze"
    src = loaded.tokenizer.encode([line])[0] + [3]
    assert loaded.tokenizer.decode([src]) == [line]  # the tokenizer it carries is the trained one
    mask = torch.zeros(1, len(src), dtype=torch.bool)
    tokens = loaded.eval().generate(torch.tensor([src]), mask)
    # mt's own loader gives the same weights, hence the same translation
    again = load_checkpoint(last)
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), loaded.parameters(), strict=True))
    assert again.tokenizer.decode(again.eval().generate(torch.tensor([src]), mask)) == loaded.tokenizer.decode(tokens)


def test_a_checkpoint_from_before_an_option_is_tested_as_trained(tiny_corpus: Path, tmp_path: Path) -> None:
    """`mt test --ckpt_path` of an LSTM checkpoint written before split_directions (and the other
    options in checkpoint_defaults) existed builds the model it was trained as: exit 0."""
    configs = ["--config", "configs/lstm-small.yaml", "--config", str(tiny_overlay(tmp_path, tiny_corpus, "lstm"))]
    mt("fit", *configs, "--trainer.max_steps", "2", "--model.init_args.split_directions", "false",
       "--model.init_args.residual_decoder", "false", "--model.init_args.scale_embeddings", "false")  # fmt: skip
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    for name in ("split_directions", "residual_decoder", "scale_embeddings", "cell"):
        del ckpt["hyper_parameters"][name]  # as in a checkpoint written before the option
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    test = mt("test", *configs, "--ckpt_path", str(old))
    assert "test/bleu" in test.stdout


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
    from mt.data.tokenizer import train_tokenizer

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
        "--trainer.logger", "false", "--run_dir", str(tmp_path / "run"), check=False,
    )
    assert proc.returncode == 2
    assert "nowhere/train.de: no such file" in proc.stderr and "download_data.py" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_checkpoint_with_another_tokenizer_is_refused(tiny_corpus: Path, tmp_path: Path) -> None:
    """`--ckpt_path` restores after setup() took the data's tokenizer: a different sentencepiece
    model in the checkpoint (same vocab_size) must be an error, not silently swapped in."""
    from mt.data.tokenizer import train_tokenizer
    from mt.models.transformer import TransformerSeq2Seq

    files = [tiny_corpus / "train.de", tiny_corpus / "train.en"]
    data_tok = train_tokenizer(files, vocab_size=300)
    other_tok = train_tokenizer(files, vocab_size=300, model_type="bpe")
    model = TransformerSeq2Seq(vocab_size=300, d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32)
    model.tokenizer = data_tok
    model.on_load_checkpoint({"mt_tokenizer": data_tok.model_proto})  # the same model: fine
    with pytest.raises(CheckpointError, match=r"sentencepiece model differs .*\(300 pieces each, \d+ of"):
        model.on_load_checkpoint({"mt_tokenizer": other_tok.model_proto})


def test_fit_twice_script(tiny_corpus: Path, tmp_path: Path) -> None:
    """tests/fit_twice.sh: two fits with one config land side by side, the first run's best
    checkpoint tests, a fit into a used run folder is refused (exit 2)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "tests" / "fit_twice.sh"), str(MT), str(tiny_corpus), str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    logs = "".join(f"\n--- {p.name}\n{p.read_text()}" for p in sorted(tmp_path.glob("*.log")))
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs
    assert "fit_twice: ok" in proc.stdout


FAKE_SRUN = """#!/usr/bin/env bash
# srun stand-in: drop srun's own options, run the command once, here.
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
exec "$@"
"""


def test_slurm_script_runs_through_a_fake_srun(tiny_corpus: Path, tmp_path: Path) -> None:
    """scripts/slurm/train.sbatch's command line, with `srun` replaced by a stub that runs it
    as one CPU task: it exits 0 and writes into its job's run folder."""
    if not (ROOT / ".venv" / "bin" / "activate").is_file():
        pytest.skip("train.sbatch sources .venv/bin/activate: no .venv here (`make install`)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    overlay = tiny_overlay(tmp_path, tiny_corpus, "transformer", run_folder=True)
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_SUBMIT_DIR": str(ROOT), "SLURM_JOB_ID": "4242", "SLURM_NNODES": "1",
        "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NODELIST": "localhost",
        "RUN_DIR": str(run_dir), "CKPT_EVERY_N_STEPS": "1", "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "slurm" / "train.sbatch"), "configs/transformer-small.yaml",
         "--config", str(overlay), "--trainer.accelerator", "cpu", "--trainer.strategy", "auto"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"[mt] run folder: {run_dir}" in proc.stdout + proc.stderr
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "steps" / "step=6.ckpt").is_file()


# --------------------------------------------------------------------------------------------
# The other jobs: translate, evaluate, compare, benchmark, download (typed signatures)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a tiny Transformer trained for a few steps by the installed `mt`."""
    root = tmp_path_factory.mktemp("tiny-run")
    run = root / "run"
    mt("fit", "--config", "configs/transformer-small.yaml",
       "--config", str(tiny_overlay(root, tiny_corpus, "transformer", run_folder=True)),
       "--run_dir", str(run))  # fmt: skip
    return run


def run_in_terminal(args: list[str]) -> tuple[int, bytes]:
    """Run the installed `mt` with stderr on a pseudo-terminal (100 columns); its stderr bytes."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([str(MT), *args], cwd=ROOT, stderr=slave, stdout=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while chunk := os.read(master, 4096):
            out += chunk
    os.close(master)
    return proc.wait(timeout=600), out


def test_translate_exit_status_and_progress_bar(tiny_run: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    src = tiny_corpus / "test_2016_flickr.de"
    out = tmp_path / "hyp.en"
    # The scripts' spelling (--beam-size) and the typed one (--beam_size) are the same option.
    for beam in ("--beam-size", "--beam_size"):
        proc = mt("translate", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), beam, "2")
        assert len(out.read_text().splitlines()) == len(src.read_text().splitlines())
        assert "\r" not in proc.stderr and "summary:" in proc.stderr  # a pipe: no bar
    rc, stderr = run_in_terminal(["translate", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out)])
    assert rc == 0 and b"\r" in stderr and b"sentences [" in stderr, stderr  # tqdm's bar
    rc, stderr = run_in_terminal(["translate", "--checkpoint", str(ckpt), "--input", str(src),
                                  "--output", str(out), "--quiet"])  # fmt: skip
    assert rc == 0 and stderr.strip() == b"", stderr
    # Bad input, a usage error or a missing file, is exit 2 with one line.
    bad = mt("translate", "--checkpoint", str(ckpt), "--beam-size", "2", "--nbest", "3", check=False)
    assert_one_line_error(bad, "--nbest")
    missing = mt("translate", "--checkpoint", str(tmp_path / "none.ckpt"), "--input", str(src), check=False)
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr


def test_evaluate_and_compare_exit_status(tiny_run: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    src, ref = tiny_corpus / "test_2016_flickr.de", tiny_corpus / "test_2016_flickr.en"
    proc = mt("evaluate", "--hyp", str(ref), "--ref", str(ref), "--src", str(src), "--n-bootstrap", "10")
    assert "BLEU" in proc.stdout and "100.0" in proc.stdout
    proc = mt("compare", "--checkpoints", str(tiny_run), str(tiny_run / "checkpoints" / "last.ckpt"),
              "--names", "best", "last", "--src", str(src), "--ref", str(ref), "--out", str(tmp_path / "report"),
              "--stress-k", "1", "--n-bootstrap", "10", "--no-plots", "--beam-size", "1")  # fmt: skip
    assert (tmp_path / "report" / "report.md").is_file() and "best: BLEU" in proc.stdout
    assert_one_line_error(mt("evaluate", "--hyp", str(ref), "--reff", str(ref), check=False), "--reff")
    assert mt("evaluate", "--hyp", str(tmp_path / "none"), "--ref", str(ref), check=False).returncode == 2


def test_benchmark_and_download_exit_status(tiny_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    mt("benchmark", "train", "--smoke", "--threads", "1", "--no-hf", "--data-dir", str(tiny_corpus), "--out", str(out))
    assert json.loads(out.read_text())["benchmark"] == "train"
    assert_one_line_error(mt("benchmark", "fly", check=False), "fly")
    mirror = tmp_path / "mirror"
    write_corpus(mirror / "multi30k", {"test_2018_flickr": 5}, seed=3)  # no known hash: unverified
    proc = mt("download", "--corpus", "multi30k", "--splits", "test_2018_flickr", "--langs", "de,en",
              "--mirror", str(mirror), "--out", str(tmp_path / "data"))  # fmt: skip
    assert "done: 2 written" in proc.stdout
    assert (tmp_path / "data" / "multi30k" / "test_2018_flickr.de").read_text() == (
        mirror / "multi30k" / "test_2018_flickr.de").read_text()
    assert_one_line_error(mt("download", "--corpus", "multi31k", check=False), "multi31k")


def test_every_command_has_typed_help() -> None:
    listed = mt("--help").stdout
    for command in ("translate", "evaluate", "compare", "benchmark", "download", "synthetic",
                    "gradients", "export", "average", "study"):
        assert command in listed
        out = mt(command, "--help").stdout
        assert out.startswith(f"usage: mt {command}")
        assert "type:" in out or command == "benchmark"  # jsonargparse's typed options


def test_synthetic_defaults_are_the_spec_defaults() -> None:
    """`mt synthetic`'s signature repeats SyntheticSpec's defaults (for --help): they agree."""
    import inspect

    from mt.commands import synthetic
    from mt.data.synthetic import SyntheticSpec, parse_bands

    defaults = {k: p.default for k, p in inspect.signature(synthetic).parameters.items()}
    spec = SyntheticSpec()
    assert parse_bands(defaults.pop("test_bands")) == spec.test_bands
    defaults.pop("out")
    assert defaults == {k: getattr(spec, k) for k in defaults}


def test_package_exports_the_public_classes_lazily() -> None:
    """`from mt import TransformerSeq2Seq, ...` works, and `import mt` alone loads no torch (the
    `mt` command's help stays fast)."""
    code = (
        "import sys, mt\n"
        "assert 'torch' not in sys.modules, 'import mt loaded torch'\n"
        "from mt.data.datamodule import TranslationDataModule\n"
        "from mt.models.lstm import LSTMSeq2Seq\n"
        "from mt.models.transformer import TransformerSeq2Seq\n"
        "from mt.tools.translate import Translator\n"
        "assert (mt.TranslationDataModule, mt.LSTMSeq2Seq, mt.TransformerSeq2Seq, mt.Translator) == "
        "(TranslationDataModule, LSTMSeq2Seq, TransformerSeq2Seq, Translator)\n"
        "assert all(getattr(mt, name).__name__ == name for name in mt.__all__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_package_old_module_paths_are_the_moved_modules() -> None:
    """The module paths from before the subpackages still import (run folders' config.yaml files
    and checkpoints name classes by them), as the very same objects, and `import mt` stays free of
    torch."""
    code = (
        "import importlib, sys, mt\n"
        "import mt.data\n"
        "assert 'torch' not in sys.modules, 'import mt or mt.data loaded torch'\n"
        "import mt.rnn, mt.module\n"
        "import mt.models.module, mt.models.rnn, mt.data.datamodule\n"
        "assert mt.rnn.RNNSeq2Seq is mt.models.rnn.RNNSeq2Seq\n"
        "assert mt.module.WarmupLR is mt.models.module.WarmupLR\n"
        "assert mt.data.TranslationDataModule is mt.data.datamodule.TranslationDataModule\n"
        "assert sys.modules['mt.rnn'] is mt.models.rnn and mt.rnn.__name__ == 'mt.models.rnn'\n"
        "from mt import _compat\n"
        "for old, new in _compat.MOVED.items():\n"
        "    assert importlib.import_module(old) is importlib.import_module(new), old\n"
        "from mt.lstm import LSTMSeq2Seq\n"
        "from mt.models.lstm import LSTMSeq2Seq as moved\n"
        "assert LSTMSeq2Seq is moved\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_print_config_of_a_config_with_old_class_paths(tmp_path: Path) -> None:
    """A config.yaml written before the subpackages (old class paths) still parses."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "model:\n"
        "  class_path: mt.rnn.RNNSeq2Seq\n"
        "  init_args:\n"
        "    cell: gru\n"
        "    lr_scheduler:\n"
        "      class_path: mt.module.WarmupLR\n"
        "      init_args: {warmup_steps: 3}\n"
        "trainer:\n"
        "  callbacks:\n"
        "  - class_path: mt.throughput.ThroughputMonitor\n"
    )
    resolved = yaml.safe_load(mt("fit", "--config", str(config), "--print_config").stdout)
    model = resolved["model"]
    assert model["class_path"].rsplit(".", 1)[-1] == "RNNSeq2Seq" and model["init_args"]["cell"] == "gru"
    assert model["init_args"]["lr_scheduler"]["class_path"].endswith(".WarmupLR")
    assert model["init_args"]["lr_scheduler"]["init_args"]["warmup_steps"] == 3
    (callback,) = resolved["trainer"]["callbacks"]
    assert callback["class_path"].endswith(".ThroughputMonitor")


#: Every job beside training, with one bad input each: (arguments, what the line must name).
#: ``{tmp}`` is the test's folder, ``{text}`` an existing one-line text file in it.
BAD_INPUTS = {
    "translate-usage": (["translate", "--checkpoint", "{tmp}/m.ckpt", "--beam_size", "2", "--nbest", "3"], "--nbest"),
    "translate-file": (["translate", "--checkpoint", "{tmp}/none.ckpt", "--input", "{text}"], "{tmp}/none.ckpt"),
    "evaluate": (["evaluate", "--hyp", "{tmp}/none.txt", "--ref", "{text}"], "{tmp}/none.txt"),
    "compare": (["compare", "--checkpoints", "{tmp}", "--src", "{text}", "--ref", "{text}", "--out", "{tmp}/o"],
                "{tmp}: no checkpoints/best.ckpt"),
    "benchmark": (["benchmark", "length", "--smoke", "--lengths", "1", "8", "--out", "{tmp}/b.json"], "--lengths"),
    "benchmark-train": (["benchmark", "train", "--smoke", "--steps", "0", "--out", "{tmp}/b.json"], "--steps"),
    "download": (["download", "--corpus", "multi30k", "--mirror", "{tmp}/none", "--out", "{tmp}/d"], "{tmp}/none"),
    "synthetic": (["synthetic", "--out", "{tmp}/s", "--test_bands", "20"], "20"),
    "gradients": (["gradients", "--input", "{tmp}/none.txt", "--reference", "{text}", "--out", "{tmp}/g",
                   "--checkpoint", "{tmp}/m.ckpt"], "{tmp}/none.txt"),
    "export": (["export", "--checkpoint", "{tmp}/none.ckpt", "--out", "{tmp}/e"], "{tmp}/none.ckpt"),
    "average": (["average", "--checkpoints", "{tmp}/none.ckpt", "{text}", "--out", "{tmp}/a.ckpt"], "{tmp}/none.ckpt"),
    "study": (["study", "--config", "{tmp}/none.yaml"], "{tmp}/none.yaml"),
}


@pytest.mark.parametrize(
    "case",
    [
        case
        for case in BAD_INPUTS
    ],
)  # fmt: skip
def test_every_job_reports_bad_input_in_one_line(case: str, tmp_path: Path) -> None:
    """Through the installed executable: exit status 2, and one line `mt <job>: error: ...` on
    stderr that names the option or file at fault (no traceback, no usage text)."""
    text = tmp_path / "text.txt"
    text.write_text("ein satz\n")
    args, named = BAD_INPUTS[case]
    fill = {"tmp": str(tmp_path), "text": str(text)}
    proc = mt(*[a.format(**fill) for a in args], check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"mt {args[0]}: error: "), proc.stderr
    assert named.format(**fill) in proc.stderr, proc.stderr
