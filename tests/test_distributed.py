"""Cluster readiness on CPU: 2-process DDP (gloo), BLEU equal to 1 process, exact resume after
SIGKILL, truncated checkpoints, atomic checkpoint writes, one W&B run per run directory.

The subprocess runs are `python -m mt ...` with `--trainer.strategy ddp --trainer.devices 2`
(Lightning relaunches the command for rank 1); test-only callbacks come from tests/helpers_ddp.py
through PYTHONPATH. One transformer run (module fixture) is the reference for several tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml
from helpers_ddp import read_records
from lightning.pytorch.callbacks import ModelCheckpoint

from mt.cli import RUN_ID_FILE, WandbLogger, main
from mt.cluster import (
    AtomicCheckpointIO,
    StepSeededRNG,
    atomic_torch_save,
    check_checkpoint_file,
    latest_checkpoint,
)
from mt.models.module import CheckpointError, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
DDP = ["--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2"]
CPU = ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]
TRAIN_LINES = 400  # conftest.TINY_SIZES["train"]
STEPS = 10  # 6 steps per epoch on each of 2 ranks at max_tokens 1024: one epoch and a bit
CKPT_EVERY = 3


def mt(*args: str, base_temp: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "WANDB_MODE": "disabled",
        "MT_CACHE_DIR": str(base_temp / "mt-cache"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mt", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mt {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def config_args(run: Path, corpus: Path, model: str, kill_at_step: int | None = None) -> list[str]:
    """A small shipped config shrunk to seconds, with step checkpoints and a batch recorder."""
    sizes = (
        {"d_model": 32, "n_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 64}
        if model == "transformer"
        else {"embed_dim": 32, "hidden_size": 32, "encoder_layers": 1, "decoder_layers": 1}
    )
    overlay = {
        "trainer": {
            "max_steps": STEPS,
            "limit_val_batches": 1.0,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(run),
            "logger": {"class_path": "mt.cli.WandbLogger", "init_args": {"save_dir": str(run)}},
            # The lists of callbacks merge by position with the shipped config's.
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {
                        "dirpath": str(run / "ckpt"),
                        "filename": "{step}",
                        "monitor": None,
                        "mode": "min",
                        "save_top_k": -1,
                        "every_n_train_steps": CKPT_EVERY,
                        "save_last": True,
                    },
                },
                {
                    "class_path": "helpers_ddp.BatchRecorder",
                    "init_args": {"out_dir": str(run / "rec"), "kill_at_step": kill_at_step},
                },
            ],
        },
        "model": {
            "init_args": {
                **sizes,
                "lr_scheduler": {
                    "class_path": "mt.models.module.WarmupLR",
                    "init_args": {"warmup_steps": 5},
                },
            }
        },
        "data": {
            "data_dir": str(corpus),
            "vocab_size": 300,
            "max_tokens": 1024,
            "eval_max_tokens": 128,  # 6 validation batches: 3 per rank, the same as 1 process's
            "num_workers": 0,
        },
    }
    run.mkdir(parents=True, exist_ok=True)
    path = run / f"overlay-{kill_at_step}.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return ["--config", f"configs/{model}-small.yaml", "--config", str(path)]


def by_step(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["step"]: r for r in records}


def assert_epoch_covers_corpus_once(records: list[list[dict[str, Any]]], epoch: int) -> None:
    """The batches of ``epoch`` over all ranks hold every training line exactly once."""
    seen = sorted(i for rank in records for r in rank if r["epoch"] == epoch for i in r["indices"])
    assert seen == list(range(TRAIN_LINES))


def sampler_state(ckpt: Path) -> dict[str, int]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    return state["TranslationDataModule"]["train_sampler"]


@pytest.fixture(scope="module")
def transformer_run(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-process transformer fit of STEPS steps: the reference of the tests below."""
    run = tmp_path_factory.mktemp("ddp-transformer")
    proc = mt("fit", *config_args(run, tiny_corpus, "transformer"), *DDP,
              base_temp=tmp_path_factory.getbasetemp())
    (run / "fit.log").write_text(proc.stdout + proc.stderr)
    return run


# --------------------------------------------------------------------------------------------
# DDP training and evaluation
# --------------------------------------------------------------------------------------------


def test_ddp_fit_transformer_shards_batches_and_agrees_on_bleu(
    transformer_run: Path, tiny_corpus: Path
) -> None:
    assert "distributed_backend=gloo" in (transformer_run / "fit.log").read_text()
    recs = [read_records(transformer_run / "rec", "batches", r) for r in (0, 1)]
    assert [len(r) for r in recs] == [STEPS, STEPS]
    assert [r["step"] for r in recs[0]] == list(range(1, STEPS + 1))
    assert_epoch_covers_corpus_once(recs, 0)
    # Epoch 1 is reshuffled: the same batches in another order.
    epoch = [[tuple(r["indices"]) for r in recs[0] if r["epoch"] == e] for e in (0, 1)]
    assert epoch[1] and epoch[1] != epoch[0][: len(epoch[1])]
    # Validation: every rank logs the same scores, computed on all 30 lines in file order.
    val = [read_records(transformer_run / "rec", "val", r)[-1] for r in (0, 1)]
    assert val[0]["metrics"] == val[1]["metrics"] and "val/bleu" in val[0]["metrics"]
    assert val[0]["refs"] == (tiny_corpus / "val.en").read_text("utf-8").splitlines()
    assert len(val[0]["hyps"]) == 30
    ckpts = sorted(p.name for p in (transformer_run / "ckpt").iterdir())
    assert ckpts == ["last.ckpt", "step=3.ckpt", "step=6.ckpt", "step=9.ckpt"]  # no temp files
    assert sampler_state(transformer_run / "ckpt" / "step=3.ckpt") == {
        "epoch": 0, "position": 3, "seed": 1
    }
    # A checkpoint at the end of an epoch resumes at the start of the next one.
    assert sampler_state(transformer_run / "ckpt" / "step=6.ckpt") == {
        "epoch": 1, "position": 0, "seed": 1
    }


def test_ddp_fit_lstm_with_bf16_and_gradient_accumulation(
    tiny_corpus: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    args = config_args(tmp_path, tiny_corpus, "lstm")
    mt("fit", *args, *DDP, "--trainer.precision", "bf16-mixed",
       "--trainer.accumulate_grad_batches", "2", "--trainer.max_steps", "4",
       "--trainer.limit_val_batches", "1", base_temp=tmp_path_factory.getbasetemp())
    recs = [read_records(tmp_path / "rec", "batches", r) for r in (0, 1)]
    assert [len(r) for r in recs] == [8, 8]  # 4 optimizer steps x 2 micro-batches
    assert [r["step"] for r in recs[0]] == [0, 1, 1, 2, 2, 3, 3, 4]
    assert_epoch_covers_corpus_once(recs, 0)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for rank in recs for r in rank)
    model = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert type(model).__name__ == "LSTMSeq2Seq"


def test_validate_with_two_processes_equals_one_process(
    transformer_run: Path, tiny_corpus: Path, tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ckpt = transformer_run / "ckpt" / "step=9.ckpt"
    results = {}
    for name, devices in (("one", CPU), ("two", DDP)):
        run = tmp_path / name
        args = config_args(run, tiny_corpus, "transformer")
        mt("validate", *args, *devices,
           "--ckpt_path", str(ckpt), base_temp=tmp_path_factory.getbasetemp())
        results[name] = [read_records(run / "rec", "val", r) for r in (0, 1)]
    one, two = results["one"][0][-1], results["two"][0][-1]
    assert results["one"][1] == []  # really one process
    assert two["world_size"] == 2 and results["two"][1][-1]["metrics"] == two["metrics"]
    assert two["hyps"] == one["hyps"] and two["refs"] == one["refs"] and len(one["hyps"]) == 30
    for key in ("val/bleu", "val/chrf"):
        assert two["metrics"][key] == one["metrics"][key]
    assert two["metrics"]["val/loss"] == pytest.approx(one["metrics"]["val/loss"], rel=1e-6)


# --------------------------------------------------------------------------------------------
# Resume
# --------------------------------------------------------------------------------------------


def test_sigkill_mid_epoch_then_resume_is_exact(
    transformer_run: Path, tiny_corpus: Path, tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.getbasetemp()
    killed = mt("fit", *config_args(tmp_path, tiny_corpus, "transformer", kill_at_step=5), *DDP,
                base_temp=base, check=False)
    assert killed.returncode in (-9, 137), killed.stderr[-2000:]
    before = [read_records(tmp_path / "rec", "batches", r) for r in (0, 1)]
    assert [r["step"] for r in before[0]] == [1, 2, 3, 4]  # step 4 is lost: no checkpoint
    assert sampler_state(tmp_path / "ckpt" / "last.ckpt") == {"epoch": 0, "position": 3, "seed": 1}

    resumed = mt("fit", *config_args(tmp_path, tiny_corpus, "transformer"), *DDP,
                 "--ckpt_path", "last", base_temp=base)
    assert "resuming from" in resumed.stdout + resumed.stderr
    after = [read_records(tmp_path / "rec", "batches", r)[len(before[r]):] for r in (0, 1)]
    reference = [by_step(read_records(transformer_run / "rec", "batches", r)) for r in (0, 1)]
    for rank in (0, 1):
        assert [r["step"] for r in after[rank]] == list(range(4, STEPS + 1))
        for r in after[rank]:
            ref = reference[rank][r["step"]]
            # The same batches, and bit for bit the same losses: weights, optimizer, LR
            # schedule and dropout's random numbers are all restored.
            assert (r["epoch"], r["indices"]) == (ref["epoch"], ref["indices"])
            assert r["loss"] == ref["loss"], f"rank {rank} step {r['step']}"
    # The interrupted epoch: every line exactly once over the steps kept before the kill and the
    # steps after the resume.
    kept = [[r for r in before[rank] if r["step"] <= CKPT_EVERY] + after[rank] for rank in (0, 1)]
    assert_epoch_covers_corpus_once(kept, 0)


# --------------------------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------------------------


def truncated_copy(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) // 2])
    return dst


def test_truncated_checkpoint_is_reported_not_loaded(
    transformer_run: Path, tiny_corpus: Path, tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str],
) -> None:
    bad = truncated_copy(transformer_run / "ckpt" / "last.ckpt", tmp_path / "bad.ckpt")
    for check in (check_checkpoint_file, load_checkpoint, AtomicCheckpointIO().load_checkpoint):
        with pytest.raises(CheckpointError, match="bad.ckpt"):
            check(bad)

    # `mt fit --ckpt_path FILE`: one line naming the file, before any training starts.
    args = config_args(tmp_path / "run", tiny_corpus, "transformer")
    proc = mt("fit", *args, *CPU, "--ckpt_path", str(bad),
              base_temp=tmp_path_factory.getbasetemp(), check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "Epoch" not in proc.stdout
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("mt: error: ") and str(bad) in last_line
    assert "truncated" in last_line

    # `--ckpt_path last` resolving to a truncated last.ckpt: the same, here in-process.
    run = tmp_path / "run"
    truncated_copy(transformer_run / "ckpt" / "last.ckpt", run / "ckpt" / "last.ckpt")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, *CPU, "--ckpt_path", "last"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert f"{run / 'ckpt' / 'last.ckpt'}: not a readable checkpoint" in err


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise RuntimeError("killed while saving")


def test_atomic_save_never_leaves_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    with pytest.raises(RuntimeError, match="killed while saving"):
        atomic_torch_save({"step": 2, "bad": _Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    AtomicCheckpointIO().save_checkpoint({"step": 3}, path)
    assert AtomicCheckpointIO().load_checkpoint(path) == {"step": 3}


def test_checkpoints_follow_the_umask(tmp_path: Path) -> None:
    """Not mkstemp's 0o600: a checkpoint is readable by whoever the umask lets read files."""
    old_mask = os.umask(0o022)
    try:
        atomic_torch_save({"step": 1}, tmp_path / "a.ckpt")
        os.umask(0o077)
        AtomicCheckpointIO().save_checkpoint({"step": 1}, tmp_path / "b.ckpt")
    finally:
        os.umask(old_mask)
    assert (tmp_path / "a.ckpt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.ckpt").stat().st_mode & 0o777 == 0o600
    (tmp_path / "a.ckpt").chmod(0o664)  # a file replaced keeps its mode, as with open("w")
    atomic_torch_save({"step": 2}, tmp_path / "a.ckpt")
    assert (tmp_path / "a.ckpt").stat().st_mode & 0o777 == 0o664


def test_ckpt_path_last_includes_slurm_hpc_checkpoints(tmp_path: Path) -> None:
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        logger=False,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt")],
        enable_progress_bar=False,
    )
    assert latest_checkpoint(trainer) is None
    last = tmp_path / "ckpt" / "last.ckpt"
    atomic_torch_save({}, last)
    assert latest_checkpoint(trainer) == str(last)
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    atomic_torch_save({}, hpc)
    os.utime(last, (1, 1))  # older than the requeue checkpoint
    assert latest_checkpoint(trainer) == str(hpc)


def test_step_seeded_rng_is_restored_from_the_checkpoint() -> None:
    a, b = StepSeededRNG(), StepSeededRNG(seed=7)
    a.load_state_dict(b.state_dict())
    assert a.seed == 7


# --------------------------------------------------------------------------------------------
# W&B
# --------------------------------------------------------------------------------------------


def test_wandb_run_id_is_stored_in_the_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    first = WandbLogger(save_dir=str(tmp_path / "run"))
    again = WandbLogger(save_dir=str(tmp_path / "run"))  # a resumed or requeued job
    assert first.version and again.version == first.version
    assert (tmp_path / "run" / RUN_ID_FILE).read_text().strip() == first.version
    assert not first.reused_run_id and again.reused_run_id
    assert WandbLogger(save_dir=str(tmp_path / "other")).version != first.version
    assert WandbLogger(save_dir=str(tmp_path / "run"), id="given").version == "given"

    # Ranks other than 0 never write the file (their loggers do not log).
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert WandbLogger(save_dir=str(tmp_path / "rank1")).version is None
    assert not (tmp_path / "rank1" / RUN_ID_FILE).exists()
    assert WandbLogger(save_dir=str(tmp_path / "run")).version == first.version
    shutil.rmtree(tmp_path / "run")
