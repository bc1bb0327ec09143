"""EvalReport logging offline to W&B and CSV (mt.eval.reporting), the comparison report (mt.eval.compare)
and translate-then-score (mt.eval.evaluate_cli --checkpoint), on two tiny models trained for seconds.

The ``runs`` fixture trains a tiny Transformer (CSV logger) and a tiny LSTM (W&B offline + CSV,
then tested) with ModelCheckpoint, ThroughputMonitor and EvalReport, as a config would; the
comparison then reads their run directories like ``scripts/compare.py --checkpoints RUN...``.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from mt.data.datamodule import TranslationDataModule
from mt.eval import compare as cmp
from mt.eval.compare_report import format_report_md
from mt.eval.comparison import (
    CompareReport,
    DecodingSpeed,
    ModelResult,
    StressResult,
    TrainingLogs,
)
from mt.eval.evaluate_cli import main as evaluate_main
from mt.eval.evaluate_cli import read_lines
from mt.eval.evaluation import DEFAULT_EDGES, BucketScore, corpus_scores, length_buckets
from mt.eval.progress import TrainingProgress
from mt.eval.reporting import (
    AttentionMap,
    EvalReport,
    attention_figure,
    attention_health,
    attention_map,
    pick_lines,
)
from mt.eval.throughput import ThroughputMonitor
from mt.models.lstm import LSTMSeq2Seq
from mt.models.module import Seq2SeqModule
from mt.models.transformer import TransformerSeq2Seq
from mt.tools.translate import Translator

torch.set_num_threads(1)  # tiny models: threads only contend (as in test_translate.py)

VOCAB = 300
PNG = b"\x89PNG\r\n\x1a\n"


def tiny_model(kind: str, seed: int = 0, lr: float = 5e-3) -> Seq2SeqModule:
    torch.manual_seed(seed)

    def optimizer(params):  # noqa: ANN001, ANN202
        return torch.optim.AdamW(params, lr=lr)

    if kind == "transformer":
        return TransformerSeq2Seq(VOCAB, d_model=32, n_heads=2, encoder_layers=1,
                                  decoder_layers=1, ffn_dim=64, dropout=0.0, optimizer=optimizer)
    return LSTMSeq2Seq(VOCAB, embed_dim=32, hidden_size=32, encoder_layers=1, decoder_layers=1,
                       dropout=0.0, input_feeding=False, optimizer=optimizer)


@pytest.fixture(scope="module")
def datamodule(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> TranslationDataModule:
    dm = TranslationDataModule(
        data_dir=str(tiny_corpus), vocab_size=VOCAB, max_tokens=512, num_workers=0,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )  # fmt: skip
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def runs(
    datamodule: TranslationDataModule, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Run directories of a tiny Transformer (60 steps) and a tiny LSTM (20 steps, W&B)."""
    wandb = pytest.importorskip("wandb")
    root = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_DIR", str(root))
    mp.setenv("WANDB_SILENT", "true")
    out = {}
    try:
        for kind, steps in (("transformer", 60), ("lstm", 20)):
            run = out[kind] = root / kind
            loggers: list = [CSVLogger(str(run), name="csv")]
            if kind == "lstm":
                run.mkdir(parents=True)
                # What LightningCLI saves in trainer.log_dir (the first logger's save_dir)
                (run / "config.yaml").write_text("model:\n  marker: zebra-config-7319\n")
                loggers.insert(0, WandbLogger(project="mt-test", save_dir=str(run), offline=True))
            trainer = L.Trainer(
                accelerator="cpu", max_steps=steps, val_check_interval=steps // 2,
                check_val_every_n_epoch=None, num_sanity_val_steps=0, log_every_n_steps=5,
                logger=loggers, enable_progress_bar=False, enable_model_summary=False,
                callbacks=[
                    ModelCheckpoint(dirpath=str(run / "checkpoints"), filename="best",
                                    monitor="val/bleu", mode="max"),
                    ThroughputMonitor(warmup_steps=2, log_every_n_steps=5),
                    EvalReport(n_samples=4, n_attention=2, bucket_edges=[4, 6], n_bootstrap=20),
                ],
            )
            model = tiny_model(kind)
            trainer.fit(model, datamodule=datamodule)
            if kind == "lstm":
                trainer.test(model, datamodule=datamodule)
                wandb.finish()
    finally:
        mp.undo()
    return out


@pytest.fixture(scope="module")
def compared(
    runs: dict[str, Path], tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """`mt compare` of the two runs (one named by its folder, one by its checkpoint) on
    references built from both systems' outputs and the real references, so that the scores are
    neither 0 nor 100 and differ by model and by bucket."""
    tmp = tmp_path_factory.mktemp("compare")
    ckpt_a = runs["transformer"] / "checkpoints" / "best.ckpt"
    ckpt_b = runs["lstm"] / "checkpoints" / "best.ckpt"
    src_file = tiny_corpus / "test_2016_flickr.de"
    src, real = read_lines(src_file), read_lines(tiny_corpus / "test_2016_flickr.en")
    hyps = {}
    for name, ckpt in (("a", ckpt_a), ("b", ckpt_b)):
        model = Seq2SeqModule.load_from_checkpoint(ckpt)
        translator = Translator(model, model.tokenizer, beam_size=2)
        hyps[name] = [t[0].text for t in translator.translate(src)]
    refs = [(hyps["a"][i], hyps["b"][i], real[i])[i % 3] for i in range(len(src))]
    ref_file = tmp / "ref.txt"
    ref_file.write_text("".join(r + "\n" for r in refs), encoding="utf-8")

    out = tmp / "report"
    common = ["--src", str(src_file), "--ref", str(ref_file), "--beam-size", "2"]
    buckets = ["--bucket-edges", "4", "6", "--n-bootstrap", "100"]
    rc = cmp.main(["--checkpoints", str(runs["transformer"]), str(ckpt_b), *common, *buckets,
                   "--out", str(out), "--stress-k", "1", "3"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    return {"report": report, "out": out, "hyps": hyps, "src": src, "common": common,
            "buckets": buckets, "ckpt_a": ckpt_a}  # fmt: skip


def test_compare_names_models_and_keeps_their_translations(compared: dict[str, Any]) -> None:
    a, b = compared["report"]["models"]
    assert (a["name"], b["name"]) == ("transformer", "lstm")
    assert (a["architecture"], b["architecture"]) == ("TransformerSeq2Seq", "LSTMSeq2Seq")
    assert a["num_parameters"] == tiny_model("transformer").num_parameters()
    assert b["num_parameters"] == tiny_model("lstm").num_parameters()
    for m, key in ((a, "a"), (b, "b")):  # files are read as sacrebleu reads them: rstrip()-ed
        assert read_lines(m["hypotheses"]) == [h.rstrip() for h in compared["hyps"][key]]
    assert 0 < a["scores"]["bleu"] < 100 and a["scores"]["bleu"] != b["scores"]["bleu"]


def test_compare_scores_are_those_of_evaluate(compared: dict[str, Any], tmp_path: Path) -> None:
    """The same numbers as `mt evaluate` on the written hypotheses: scores, signatures, buckets
    with their intervals; the stress set of K=1 is the test set itself."""
    common, buckets, n_src = compared["common"], compared["buckets"], len(compared["src"])
    for m in compared["report"]["models"]:
        evaluated = tmp_path / f"{m['name']}.json"
        assert evaluate_main(["--hyp", m["hypotheses"], *common[:4], *buckets,
                              "--json", str(evaluated)]) == 0
        expected = json.loads(evaluated.read_text())
        for key in ("bleu", "chrf", "bleu_signature", "chrf_signature", "bleu_detail", "n"):
            assert m["scores"][key] == expected[key], key
        assert m["buckets"] == expected["buckets"] and len(m["buckets"]) == 3
        assert [s["k"] for s in m["stress"]] == [1, 3]
        assert m["stress"][0]["bleu"] == m["scores"]["bleu"]
        assert m["stress"][1]["lines"] == -(-n_src // 3)
        lo, hi = m["bleu_ci"]
        assert lo <= m["scores"]["bleu"] <= hi


def test_compare_paired_bootstrap_of_the_two_models(compared: dict[str, Any]) -> None:
    report = compared["report"]
    a, b = report["models"]
    (pair,) = report["paired_bootstrap"]
    assert (pair["baseline"], pair["system"]) == ("transformer", "lstm")
    assert (pair["bleu_a"], pair["bleu_b"]) == (a["scores"]["bleu"], b["scores"]["bleu"])
    assert 0 < pair["p_value"] <= 1


def test_compare_report_json_keeps_its_shape(compared: dict[str, Any]) -> None:
    """report.json is read by other tools: its keys stay these, in this order."""
    report = compared["report"]
    assert list(report) == ["src", "ref", "n_sentences", "beam_size", "length_penalty",
                            "max_tokens", "bucket_edges", "n_bootstrap", "seed", "stress_k",
                            "signatures", "models", "paired_bootstrap", "plots"]  # fmt: skip
    model = report["models"][0]
    assert list(model) == ["name", "checkpoint", "run_dir", "architecture", "num_parameters",
                           "hypotheses", "scores", "bleu_ci", "chrf_ci", "buckets", "stress",
                           "attention_health", "decoding", "training"]  # fmt: skip
    assert list(model["buckets"][0]) == ["label", "lo", "hi", "n", "bleu", "chrf", "bleu_ci",
                                         "chrf_ci"]  # fmt: skip
    assert list(model["stress"][0]) == ["k", "lines", "mean_src_words", "bleu", "chrf"]
    assert list(model["decoding"]) == ["seconds", "sentences", "tgt_tokens", "sentences_per_sec",
                                       "tgt_tokens_per_sec", "beam_size", "max_tokens", "device"]  # fmt: skip
    assert list(model["training"]) == ["files", "curve", "throughput", "throughput_n", "test_bleu"]
    assert list(model["training"]["curve"][0]) == ["step", "val_bleu", "wall_s", "tgt_tokens_seen"]
    assert list(model["attention_health"]) == ["entropy", "same_argmax", "sentences", "steps"]
    assert list(report["paired_bootstrap"][0]) == ["baseline", "system", "bleu_a", "bleu_b",
                                                   "delta", "p_value", "ci_a", "ci_b", "mean_a",
                                                   "mean_b", "n_bootstrap", "seed"]  # fmt: skip
    assert model["decoding"]["beam_size"] == 2 and model["decoding"]["device"] == "cpu"


def test_report_md_of_typed_results_with_an_empty_bucket_and_no_logs() -> None:
    """NaN (an empty bucket, no interval) reads n/a and gets no interval; JSON gets null."""
    scores = corpus_scores(["a b c d"], ["a b c e"])
    nan2 = (math.nan, math.nan)
    buckets = [BucketScore("1-4", 1, 4, 1, scores.bleu, scores.chrf, (10.0, 20.0), (30.0, 40.0)),
               BucketScore("5+", 5, None, 0, math.nan, math.nan, nan2, nan2)]  # fmt: skip
    model = ModelResult(
        name="m", checkpoint="m.ckpt", run_dir=None, architecture="TransformerSeq2Seq",
        num_parameters=1_500_000, hypotheses="m.hyp", scores=scores, bleu_ci=nan2,
        chrf_ci=(1.0, 2.0), buckets=buckets, stress=[StressResult(1, 1, 4.0, scores.bleu, 9.0)],
        attention_health=None, decoding=DecodingSpeed(1.0, 1, 4, 1.0, 4.0, 2, 64, "cpu"),
        training=TrainingLogs(),
    )  # fmt: skip
    report = CompareReport("s", "r", 1, 2, 1.0, 64, [4], 10, 1, [1], [model], [])
    md = format_report_md(report)
    assert f"| 1-4 | 1 | {scores.bleu:.1f} [10.0, 20.0] |" in md and "| 5+ | 0 | n/a | n/a |" in md
    assert f"| {scores.bleu:.1f} | {scores.chrf:.1f} [1.0, 2.0] |" in md  # no BLEU interval
    assert "| m | TransformerSeq2Seq | 1.50M |" in md
    assert "| m | 0 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |" in md  # no logs
    assert "(one model: nothing to compare)" in md
    as_json = report.to_dict()
    assert as_json["models"][0]["bleu_ci"] == [None, None]
    assert as_json["models"][0]["buckets"][1]["bleu"] is None
    assert json.dumps(as_json, allow_nan=False)


def test_compare_reads_the_runs_training_logs(compared: dict[str, Any]) -> None:
    """Two validations with the wall-clock and target tokens that EvalReport logged, throughput
    from ThroughputMonitor, from the runs' CSVLogger files."""
    training = compared["report"]["models"][0]["training"]
    curve = training["curve"]
    assert len(curve) == 2 and 0 < curve[0]["step"] < curve[1]["step"]
    assert 0 < curve[0]["wall_s"] < curve[1]["wall_s"]
    assert 0 < curve[0]["tgt_tokens_seen"] < curve[1]["tgt_tokens_seen"]
    assert training["throughput"]["train/tgt_tokens_per_sec"] > 0
    assert training["throughput"]["train/mfu"] is None  # CPU: no MFU


def test_compare_attention_health(compared: dict[str, Any]) -> None:
    for m in compared["report"]["models"]:
        health = m["attention_health"]
        assert 0 <= health["entropy"] <= 1 and 0 <= health["same_argmax"] <= 1
        assert health["sentences"] == len(compared["src"])
        assert health["steps"] >= len(compared["src"])


def test_compare_writes_markdown_with_its_plots(compared: dict[str, Any]) -> None:
    report, out = compared["report"], compared["out"]
    md = (out / "report.md").read_text()
    assert report["signatures"]["bleu"] in md and "p-value" in md and "| lstm |" in md
    assert "## Attention health" in md
    assert f"{report['models'][0]['scores']['bleu']:.1f}" in md
    assert set(report["plots"]) == {"bleu_by_length.png", "stress_bleu.png",
                                    "val_bleu_curves.png", "throughput.png"}
    for plot in report["plots"]:
        assert (out / plot).read_bytes().startswith(PNG) and f"]({plot})" in md


def test_evaluate_checkpoint_translates_as_compare(compared: dict[str, Any], tmp_path: Path) -> None:
    """`mt evaluate --checkpoint`: the same translations and scores as `mt compare`."""
    a = compared["report"]["models"][0]
    saved, scored = tmp_path / "a.hyp", tmp_path / "a-ckpt.json"
    assert evaluate_main(["--checkpoint", str(compared["ckpt_a"]), *compared["common"],
                          "--save-hyp", str(saved), "--json", str(scored)]) == 0
    assert read_lines(saved) == read_lines(a["hypotheses"])
    assert json.loads(scored.read_text())["bleu"] == a["scores"]["bleu"]


METRICS_CSV = """epoch,step,train/loss,train/tgt_tokens_per_sec,train/mfu,val/bleu,train/wall_s
0,9,5.0,1000.0,0.25,,
0,9,,,,1.5,
0,9,,,,,30.0
0,19,4.0,3000.0,0.35,,
0,19,,,,3.5,60.0
"""


def test_training_logs_merge_rows_and_files(tmp_path: Path) -> None:
    (tmp_path / "csv/version_0").mkdir(parents=True)
    (tmp_path / "csv/version_0/metrics.csv").write_text(METRICS_CSV)
    (tmp_path / "csv/version_1").mkdir(parents=True)
    (tmp_path / "csv/version_1/metrics.csv").write_text("step,test/bleu\n19,7.5\n")
    logs = cmp.read_training_logs(tmp_path)
    assert len(logs.files) == 2 and logs.test_bleu == 7.5
    assert logs.to_dict()["curve"] == [
        {"step": 9, "val_bleu": 1.5, "wall_s": 30.0, "tgt_tokens_seen": None},
        {"step": 19, "val_bleu": 3.5, "wall_s": 60.0, "tgt_tokens_seen": None},
    ]
    assert logs.best_val_bleu() == 3.5
    assert logs.throughput["train/tgt_tokens_per_sec"] == pytest.approx(2000.0)
    assert logs.throughput["train/mfu"] == pytest.approx(0.30)
    assert logs.throughput_n["train/mfu"] == 2 and logs.throughput_n["train/peak_mem_gb"] == 0
    nothing = cmp.read_training_logs(tmp_path / "nothing")
    assert nothing.curve == [] and nothing.best_val_bleu() is None


def test_compare_and_evaluate_input_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src.txt"
    src.write_text("a b\n")
    ref = tmp_path / "ref.txt"
    ref.write_text("a b\n")
    args = ["--src", str(src), "--ref", str(ref), "--out", str(tmp_path / "o")]
    assert cmp.main(["--checkpoints", str(tmp_path), *args]) == 2  # bad input
    assert "no checkpoints/best.ckpt" in capsys.readouterr().err
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert evaluate_main(["--checkpoint", str(bad), "--src", str(src), "--ref", str(ref)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mt evaluate: error: ") and str(bad) in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_attention_maps(kind: str, datamodule: TranslationDataModule) -> None:
    model = tiny_model(kind)
    model.train()
    line = "der mann sieht die katze"
    amap = attention_map(model, datamodule.tokenizer, line, max_len=7)
    assert amap is not None and model.training  # mode restored
    n_out, n_src = amap.weights.shape
    assert n_src == len(amap.source_tokens) == len(datamodule.tokenizer.encode([line])[0]) + 1
    assert 1 <= n_out == len(amap.output_tokens) <= 7
    assert amap.weights.min() >= 0 and abs(amap.weights.sum(1) - 1).max() < 1e-5
    fig = attention_figure(amap, "title")
    assert fig.axes[0].get_title().startswith("title") and fig.axes[0].get_xlabel()
    assert pick_lines([5, 1, 9, 3, 7], 3) == [0, 1, 2] and pick_lines([2, 2], 5) == [0, 1]


def test_attention_health_tells_collapsed_from_moving_attention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Entropy relative to uniform and the share of repeated argmaxes, from hand-made maps."""
    import mt.eval.attention

    collapsed = np.zeros((4, 5))
    collapsed[:, 0] = 1.0  # every output token on source position 0
    diagonal = np.eye(4, 5)  # one position further each token
    uniform = np.full((2, 4), 0.25)
    one_subword = np.full((3, 2), 0.5)  # the subword and EOS: nothing to align
    maps = {"a": collapsed, "b": diagonal, "c": uniform, "d": one_subword}

    def fake_map(model, tokenizer, line):  # noqa: ANN001, ANN202
        w = maps[line]
        return AttentionMap(["x"] * w.shape[1], ["y"] * w.shape[0], w, "test")

    monkeypatch.setattr(mt.eval.attention, "attention_map", fake_map)
    health = attention_health(None, None, ["a", "d"])  # type: ignore[arg-type]
    assert (health.entropy, health.same_argmax, health.sentences, health.steps) == (0.0, 1.0, 1, 4)
    health = attention_health(None, None, ["b"])  # type: ignore[arg-type]
    assert (health.entropy, health.same_argmax) == (0.0, 0.0)
    health = attention_health(None, None, ["c"])  # type: ignore[arg-type]
    assert health.entropy == pytest.approx(1.0) and health.same_argmax == 1.0
    both = attention_health(None, None, ["a", "b"])  # type: ignore[arg-type]
    assert both.same_argmax == pytest.approx(3 / 6) and both.steps == 8
    assert attention_health(None, None, ["d"]) is None  # type: ignore[arg-type]


def test_transformer_attention_hook_matches_sdpa() -> None:
    from mt.eval.attention import _transformer_weights
    from mt.models.transformer import CrossAttention, merge_heads, split_heads

    torch.manual_seed(0)
    layer = CrossAttention(16, 2, 0.0).eval()
    x, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])[:, None, None, :]
    kv = layer.memory_kv(memory)
    weights = _transformer_weights(layer, (x, kv, mask))  # (B, T, S), mean over heads
    assert torch.allclose(weights[1, :, 3:], torch.zeros(3, 2))
    # per-head weights times values reproduce the layer's SDPA output
    q = split_heads(layer.q(x), 2)
    per_head = (q @ kv[0].transpose(-2, -1) / 8**0.5).masked_fill(~mask, -torch.inf).softmax(-1)
    assert torch.allclose(per_head.mean(1), weights, atol=1e-6)
    assert torch.allclose(layer.out(merge_heads(per_head @ kv[1])), layer(x, kv, mask), atol=1e-5)
    # Beams: 3 rows per sentence read one copy of the memory; each row's weights are its own.
    beams = torch.arange(2).repeat_interleave(3)
    grouped = _transformer_weights(layer, (x[beams], kv, mask, 3))  # (6, T, S)
    assert torch.allclose(grouped, weights[beams], atol=1e-6)


def test_eval_report_logged_offline_to_wandb_and_csv(
    runs: dict[str, Path], datamodule: TranslationDataModule
) -> None:
    (run,) = (runs["lstm"] / "wandb").glob("offline-run-*")
    media = run / "files" / "media"
    tables = sorted((media / "table" / "val").glob("bleu_by_length_*.table.json"))
    assert len(tables) == 2  # one per validation (steps 10 and 20)
    buckets = json.loads(tables[0].read_text())
    assert buckets["columns"][:3] == ["bucket", "n", "bleu"]
    assert [r[0] for r in buckets["data"]] == ["1-4", "5-6", "7+"]
    assert sum(r[1] for r in buckets["data"]) == len(datamodule.source_lines("val"))
    samples = next((media / "table" / "val").glob("samples_*.table.json"))
    rows = json.loads(samples.read_text())["data"]
    assert len(rows) == 4 and all(datamodule.source_lines("val")[r[0]] == r[1] for r in rows)
    assert list((media / "table" / "test").glob("bleu_by_length_*.table.json"))
    images = list((media / "images" / "val" / "attention").glob("line*.png"))
    assert len(images) == 4 and all(p.read_bytes().startswith(PNG) for p in images)
    assert len({p.name.split("_")[0] for p in images}) == 2  # two fixed lines, two steps
    history = next(run.glob("run-*.wandb")).read_bytes()
    for key in (b"val/bleu_len_1-4", b"test/bleu_len_7+", b"train/tgt_tokens_seen",
                b"val/attention_entropy", b"val/attention_same_argmax",
                b"sacrebleu/bleu_signature", b"nrefs:1|case:mixed", b"zebra-config-7319"):
        assert key in history, key

    (csv_file,) = (runs["lstm"] / "csv").rglob("metrics.csv")
    logs = cmp.read_training_logs(runs["lstm"])
    assert len(logs.curve) == 2
    assert all(c.tgt_tokens_seen > 0 and c.wall_s > 0 for c in logs.curve)
    header = csv_file.read_text().splitlines()[0].split(",")
    assert {"val/bleu_len_1-4", "test/bleu_len_5-6", "test/bleu"} <= set(header)
    assert {"val/attention_entropy", "val/attention_same_argmax"} <= set(header)


def test_eval_report_without_wandb(datamodule: TranslationDataModule, tmp_path: Path) -> None:
    trainer = L.Trainer(
        accelerator="cpu", logger=[CSVLogger(str(tmp_path), name="run")],
        callbacks=[EvalReport(n_bootstrap=0)], enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=1,
    )
    trainer.validate(tiny_model("transformer"), datamodule=datamodule)  # a partial split
    # the evaluated rows carry their line numbers, so a partial split still gets its buckets
    header = (tmp_path / "run" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "val/bleu_len_1-10" in header


def test_eval_report_without_any_logger(
    datamodule: TranslationDataModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No logger at all: the callback still measures the whole split, quietly, and what it hands
    to the (absent) loggers are the length-bucket scores of the evaluated lines."""
    handed: list[dict[str, float]] = []
    log_metrics = EvalReport._log_metrics

    def spy(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
        handed.append(dict(metrics))
        log_metrics(trainer, metrics, step)

    monkeypatch.setattr(EvalReport, "_log_metrics", staticmethod(spy))
    trainer = L.Trainer(
        accelerator="cpu", logger=False, callbacks=[EvalReport(n_bootstrap=0)],
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    model = tiny_model("transformer")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.validate(model, datamodule=datamodule)
    assert not [w for w in caught if "EvalReport" in str(w.message)]
    sources = datamodule.source_lines("val")
    last = model.last_eval
    assert sorted(last["indices"]) == list(range(len(sources)))  # every line, once
    expected = length_buckets([sources[i] for i in last["indices"]], last["hyps"], last["refs"],
                              DEFAULT_EDGES, n_bootstrap=0)  # fmt: skip
    (metrics,) = handed
    assert {k: v for k, v in metrics.items() if k.startswith("val/bleu_len_")} == {
        f"val/bleu_len_{b.label}": b.bleu for b in expected if b.n
    }
    assert 0 <= metrics["val/attention_entropy"] <= 1


def test_training_progress_alone_counts_and_resumes(
    datamodule: TranslationDataModule, tmp_path: Path
) -> None:
    """TrainingProgress by itself logs the two counters at each validation, carries them in its
    state and continues them on resume; EvalReport keeps its own state key (old checkpoints)."""
    progress = TrainingProgress()
    trainer = L.Trainer(
        accelerator="cpu", logger=[CSVLogger(str(tmp_path), name="run")], callbacks=[progress],
        max_steps=4, val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=0,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(tiny_model("transformer"), datamodule=datamodule)
    curve = cmp.read_training_logs(tmp_path / "run").curve
    assert len(curve) == 2 and 0 < curve[0].tgt_tokens_seen < curve[1].tgt_tokens_seen
    assert 0 < curve[0].wall_s < curve[1].wall_s
    state = progress.state_dict()
    assert state["tgt_tokens_seen"] == curve[1].tgt_tokens_seen and state["wall_s"] >= curve[1].wall_s
    resumed = TrainingProgress()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state  # not started: no time runs
    assert EvalReport().state_key == "EvalReport" and progress.state_key == "TrainingProgress"
