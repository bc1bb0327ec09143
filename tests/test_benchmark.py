"""scripts/benchmark.py: every subcommand runs with --smoke and writes a complete result file.

The corpora are generated (the tiny session corpus; the data subcommand's synthetic corpora), so
these tests need neither data/multi30k nor a GPU. The Hugging Face comparison is checked only
where ``transformers`` is installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mt.tools.benchmark import hf_available, main, non_padding_share

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("device", "cpu_count", "torch_threads", "versions", "git_commit", "command", "timestamp")


def run(subcommand: str, corpus: Path, out: Path, *extra: str) -> dict[str, Any]:
    argv = [subcommand, "--smoke", "--threads", "1", "--data-dir", str(corpus), "--out", str(out)]
    assert main([*argv, *extra]) == 0
    result = json.loads(out.read_text("utf-8"))
    for key in REQUIRED:
        assert key in result, key
    assert result["benchmark"] == subcommand
    assert result["command"].startswith("scripts/benchmark.py " + subcommand)
    assert result["versions"]["torch"] and result["versions"]["python"]
    assert result["settings"]["smoke"] is True
    return result


def assert_decode_rates(row: dict[str, Any]) -> None:
    """A decode row's rates are its counts over its one measured time."""
    assert row["seconds"] > 0 and row["generated_tokens"] >= row["sentences"] > 0
    assert row["sentences_per_s"] * row["seconds"] == pytest.approx(row["sentences"])
    assert row["tgt_tokens_per_s"] * row["seconds"] == pytest.approx(row["generated_tokens"])


def assert_train_rates(r: dict[str, Any]) -> None:
    """A training run's rates agree with each other: source + target = all real tokens, fewer
    than the padded elements by exactly the padding ratio, over steps x step time seconds."""
    assert r["seconds"] > 0 and r["step_time_s"] * r["steps"] == pytest.approx(r["seconds"])
    assert r["src_tokens_per_s"] > 0 and r["tgt_tokens_per_s"] > 0
    assert r["tokens_per_s"] == pytest.approx(r["src_tokens_per_s"] + r["tgt_tokens_per_s"])
    assert r["tokens_per_s"] <= r["padded_tokens_per_s"]
    assert r["padding_ratio"] == pytest.approx(1 - r["tokens_per_s"] / r["padded_tokens_per_s"])


@pytest.fixture(scope="module")
def decode_result(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run("decode", tiny_corpus, tmp_path_factory.mktemp("bench") / "decode.json")


@pytest.fixture(scope="module")
def train_result(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run("train", tiny_corpus, tmp_path_factory.mktemp("bench") / "train.json")


def test_data(tiny_corpus: Path, tmp_path: Path) -> None:
    result = run("data", tiny_corpus, tmp_path / "data.json", "--pairs", "6000", "1000")
    padding = result["results"]["padding"]
    for kind in ("token_budget", "random_batches"):
        assert 0 < padding[kind]["non_padding_share"] <= 1
        assert padding[kind]["sentences"] == padding["pairs_after_filtering"]
    # Length-bucketed batches pad less than random ones.
    assert padding["token_budget"]["non_padding_share"] > padding["random_batches"][
        "non_padding_share"
    ]
    memory = result["results"]["corpus_memory"]
    assert [c["pairs"] for c in memory["corpora"]] == [6000, 1000]
    for corpus in memory["corpora"]:
        assert corpus["encode_pairs_per_s"] > 0 and corpus["loader_pairs_per_s"] > 0
        assert corpus["worker_processes"] == 1
        assert 0 < corpus["worker_peak_anon_rss_mb"] <= corpus["worker_peak_rss_mb"]
    large, small = memory["corpora"]
    assert large["encoded_mb"] > small["encoded_mb"] > 0  # 6000 pairs take more than 1000
    # The claim is decided on the growth from the small corpus to the large one, as reported.
    anon_growth = large["worker_peak_anon_rss_mb"] - small["worker_peak_anon_rss_mb"]
    corpus_growth = large["encoded_mb"] - small["encoded_mb"]
    assert memory["worker_anon_rss_growth_mb"] == pytest.approx(anon_growth)
    assert memory["encoded_corpus_growth_mb"] == pytest.approx(corpus_growth)
    assert memory["claim_worker_private_memory_constant"] is (anon_growth < 0.1 * max(corpus_growth, 1))


def test_decode(decode_result: dict[str, Any]) -> None:
    results = decode_result["results"]
    assert results["sentences"] > 0 and results["batches"] > 0
    archs = {m["arch"] for m in results["models"]}
    assert archs == {"transformer", "lstm"}
    for model in results["models"]:
        mt_rows = [r for r in model["rows"] if r["system"] == "mt"]
        assert {r["beam"] for r in mt_rows} == {1, 5}
        for row in model["rows"]:
            assert row["sentences"] == results["sentences"]
            assert_decode_rates(row)
    transformer = next(m for m in results["models"] if m["arch"] == "transformer")
    kv = transformer["kv_cache"]
    # Same model, same steps: recomputing the prefix gives the cached search's tokens, so the
    # speed-up is a ratio of times for the same work.
    assert kv["identical_outputs"] == 1.0
    cached, plain = kv["with_cache"], kv["recompute_prefix"]
    assert cached["generated_tokens"] == plain["generated_tokens"]
    assert kv["speedup"] == pytest.approx(plain["seconds"] / cached["seconds"])
    assert kv["speedup"] == pytest.approx(cached["tgt_tokens_per_s"] / plain["tgt_tokens_per_s"])


def test_train(train_result: dict[str, Any]) -> None:
    runs = train_result["results"]["runs"]
    assert {(r["arch"], r["system"]) for r in runs} >= {("transformer", "mt"), ("lstm", "mt")}
    for r in runs:
        assert "error" not in r, r.get("error")
        assert r["steps"] == train_result["settings"]["steps"]
        assert_train_rates(r)
        assert r["peak_mem_gb"] > 0 and r["model_tflops_per_s"] > 0
        assert r["mfu"] is None  # CPU: no peak to compare with


def test_train_at_each_precision(tiny_corpus: Path, tmp_path: Path) -> None:
    """--precisions runs every system at each; bf16-mixed autocasts the matrix products."""
    import torch

    from mt.precision import cpu_supports_bf16
    from mt.tools.benchmark.common import autocast
    from mt.tools.benchmark.record import cpu_flags

    result = run(
        "train", tiny_corpus, tmp_path / "train.json", "--steps", "1", "--no-hf",
        "--precisions", "32-true", "bf16-mixed",
    )  # fmt: skip
    runs = result["results"]["runs"]
    assert sorted((r["arch"], r["precision"]) for r in runs) == [
        ("lstm", "32-true"), ("lstm", "bf16-mixed"),
        ("transformer", "32-true"), ("transformer", "bf16-mixed"),
    ]  # fmt: skip
    assert result["cpu_flags"] == cpu_flags() and result["cpu_native_bf16"] is cpu_supports_bf16()
    x = torch.ones(2, 2)
    with autocast(torch.device("cpu"), "bf16-mixed"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "32-true"):
        assert (x @ x).dtype == torch.float32


def test_train_repeats_take_turns_and_report_the_median_run(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--repeats 2: the systems run a, b, a, b on the same batches; each row is its median run
    (the upper of two) and lists both; --repeats 0 is refused."""
    import mt.tools.benchmark.train as bench

    order: list[int] = []
    real = bench.time_training

    def recording(step: Any, batches: Any, warmup: int, device: Any, flops_of: Any) -> dict:
        order.append(id(step))
        return real(step, batches, warmup, device, flops_of)

    monkeypatch.setattr(bench, "time_training", recording)
    result = run(
        "train", tiny_corpus, tmp_path / "train.json", "--steps", "1", "--no-hf",
        "--precisions", "32-true", "--repeats", "2",
    )  # fmt: skip
    assert len(order) == 4 and order[:2] == order[2:] and order[0] != order[1]
    for r in result["results"]["runs"]:
        assert r["repeats"] == 2 and len(r["seconds_runs"]) == len(r["tokens_per_s_runs"]) == 2
        assert r["seconds"] == pytest.approx(max(r["seconds_runs"]), abs=1e-3)
        assert_train_rates(r)
    assert bench.median_round([{"seconds": 3.0, "tokens_per_s": 1}, {"seconds": 1.0, "tokens_per_s": 3},
                               {"seconds": 2.0, "tokens_per_s": 2}])["tokens_per_s"] == 2  # fmt: skip
    assert bench.median_round([{"seconds": 1.0, "tokens_per_s": 1}, {"error": "x"}]) == {"error": "x"}
    argv = ["train", "--smoke", "--data-dir", str(tiny_corpus), "--out", str(tmp_path / "x.json")]
    assert main([*argv, "--repeats", "0"]) == 2
    assert not (tmp_path / "x.json").exists()


def test_hugging_face_columns(decode_result: dict[str, Any], train_result: dict[str, Any]) -> None:
    if not hf_available():
        pytest.skip("transformers is not installed: no Hugging Face comparison")
    transformer = next(m for m in decode_result["results"]["models"] if m["arch"] == "transformer")
    hf_rows = [r for r in transformer["rows"] if r["system"] == "hf-marian"]
    assert {r["beam"] for r in hf_rows} == {1, 5}
    mt_rows = {r["beam"]: r for r in transformer["rows"] if r["system"] == "mt"}
    for row in hf_rows:
        # Equal work: EOS is banned in both, so both generate the same number of tokens.
        assert row["generated_tokens"] == mt_rows[row["beam"]]["generated_tokens"]
        assert row["tgt_tokens_per_s"] > 0
    assert set(transformer["speedup_mt_over_hf"]) == {"beam1", "beam5"}
    # Same size: Marian's parameter count is within a few percent of ours.
    assert abs(transformer["hf_parameters"] / transformer["parameters"] - 1) < 0.1
    hf_train = [r for r in train_result["results"]["runs"] if r["system"] == "hf-marian"]
    assert hf_train and all(r["tokens_per_s"] > 0 for r in hf_train)


def test_without_transformers_the_hf_rows_are_skipped(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("mt.tools.benchmark.common.hf_available", lambda: False)
    result = run("train", tiny_corpus, tmp_path / "train.json", "--steps", "1")
    assert all(r["system"] == "mt" for r in result["results"]["runs"])
    assert any("transformers is not installed" in n for n in result["notes"])
    assert "transformers is not installed" in capsys.readouterr().out


def test_non_padding_share_counts_real_tokens() -> None:
    from mt.data.batching import collate

    items = [(0, [5, 6, 7], [8], "a"), (1, [5], [8, 9, 10], "b")]
    share = non_padding_share([collate(items)])
    # src: [5 6 7 EOS], [5 EOS pad pad] -> 6 of 8; tgt_out: [8 EOS pad pad], [8 9 10 EOS] -> 6/8
    assert share["non_padding_share"] == 12 / 16
    assert share["src_non_padding_share"] == share["tgt_non_padding_share"] == 0.75


def test_time_systems_takes_turns_and_reports_the_median(monkeypatch: pytest.MonkeyPatch) -> None:
    """Systems run a, b, a, b, a, b; each row's seconds is the median of its runs."""
    import mt.tools.benchmark.decode as bench

    calls: list[str] = []
    seconds = {"a": iter([3.0, 1.0, 2.0]), "b": iter([10.0, 30.0, 20.0])}

    def fake_time_decoding(run: Any, batches: Any, device: Any) -> tuple[dict, list]:
        name = run()
        calls.append(name)
        row = {"sentences": 4, "generated_tokens": 8, "seconds": next(seconds[name])}
        return row, [[len(calls)]]

    monkeypatch.setattr(bench, "time_decoding", fake_time_decoding)
    timed = bench.time_systems({"a": lambda: "a", "b": lambda: "b"}, [], None, repeats=3)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert timed["a"][0]["seconds"] == 2.0 and timed["b"][0]["seconds"] == 20.0
    assert timed["a"][0]["seconds_runs"] == [3.0, 1.0, 2.0]
    assert timed["a"][0]["sentences_per_s"] == 2.0 and timed["b"][0]["tgt_tokens_per_s"] == 0.4
    assert timed["a"][1] == [[1]] and timed["b"][1] == [[2]]  # outputs of the first run


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_recurrent_config_is_built_with_its_cell(cell: str) -> None:
    import yaml

    from mt.models.rnn import RNNSeq2Seq
    from mt.tools.benchmark.specs import spec_from_config

    spec = spec_from_config(f"configs/{cell}-small.yaml")
    assert spec.arch == cell and spec.recurrent
    model = spec.build(vocab_size=100)
    assert isinstance(model, RNNSeq2Seq) and model.cell == cell
    config = yaml.safe_load((ROOT / f"configs/{cell}-small.yaml").read_text())["model"]["init_args"]
    assert model.input_feeding == config["input_feeding"]
    on, off = spec.with_input_feeding(True), spec.with_input_feeding(False)
    assert (on.name, off.name) == (f"{cell}-small feed", f"{cell}-small nofeed")
    assert on.build(100).input_feeding and not off.build(100).input_feeding
    assert on.build(100).cell == off.build(100).cell == cell


def test_train_takes_gru_and_rnn_configs_with_input_feeding_on_and_off(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    result = run("train", tiny_corpus, tmp_path / "train.json", "--configs", "configs/gru-small.yaml",
                 "configs/rnn-small.yaml", "--input_feeding", "both", "--no-hf", "--steps", "1",
                 "--max_tokens", "256", "--precisions", "32-true")  # fmt: skip
    runs = result["results"]["runs"]
    assert [(r["model"], r["arch"], r["init_args"]["input_feeding"]) for r in runs] == [
        ("gru-small nofeed", "gru", False), ("gru-small feed", "gru", True),
        ("rnn-small nofeed", "rnn", False), ("rnn-small feed", "rnn", True),
    ]  # fmt: skip
    for r in runs:
        assert "error" not in r, r.get("error")
        assert_train_rates(r)
    # A GRU has three gate blocks to an RNN's one: same widths, more parameters.
    assert runs[0]["parameters"] > runs[2]["parameters"]


def test_length(tiny_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "length.json"
    result = run("length", tiny_corpus, out)
    results = result["results"]
    lengths, budget = result["settings"]["lengths"], results["max_tokens"]
    names = [m["name"] for m in results["models"]]
    assert names == ["transformer-tiny", "lstm-tiny nofeed", "lstm-tiny feed", "gru-tiny nofeed",
                     "gru-tiny feed", "rnn-tiny nofeed", "rnn-tiny feed"]  # fmt: skip
    for model in results["models"]:
        assert [r["length"] for r in model["train"]] == lengths
        for row in model["train"]:
            assert "error" not in row, row.get("error")
            # An equal token budget, no padding: every batch holds budget // L sentences of L.
            assert row["sentences_per_batch"] == budget // row["length"]
            assert row["padding_ratio"] == 0.0 and row["peak_mem_gb"] > 0
            assert_train_rates(row)
        assert {(r["beam"], r["output_length"]) for r in model["decode"]} == {
            (b, n) for b in (1, 5) for n in lengths
        }
        for row in model["decode"]:  # EOS banned: every hypothesis is forced to the length
            assert row["mean_generated_length"] == row["output_length"]
            assert_decode_rates(row)
            assert row["seconds_per_sentence"] == pytest.approx(row["seconds"] / row["sentences"])
    assert {m["arch"] for m in results["models"]} == {"transformer", "lstm", "gru", "rnn"}
    assert out.with_suffix(".png").stat().st_size > 0


def test_ctranslate2_rows(decode_result: dict[str, Any]) -> None:
    transformer = next(m for m in decode_result["results"]["models"] if m["arch"] == "transformer")
    rows = {(r["system"], r["beam"]): r for r in transformer["rows"]}
    for system in ("ct2-float32", "ct2-int8"):
        for beam in (1, 5):
            row = rows[(system, beam)]
            # Equal work: the same sentences, the same number of generated tokens.
            assert row["generated_tokens"] == rows[("mt", beam)]["generated_tokens"]
            assert_decode_rates(row)
    # The float32 export of the same weights makes mt's greedy choices.
    assert rows[("ct2-float32", 1)]["same_tokens_as_mt"] >= 0.9
    lstm = next(m for m in decode_result["results"]["models"] if m["arch"] == "lstm")
    assert {r["system"] for r in lstm["rows"]} == {"mt"}  # CTranslate2 has no recurrent models


def test_the_package_keeps_the_names_of_the_former_module() -> None:
    """`mt.tools.benchmark` (and the older `mt.benchmark`) still give every public name of the
    former one-file module: the very object of the job's module that defines it now."""
    import importlib

    import mt.tools.benchmark as package

    assert importlib.import_module("mt.benchmark") is package
    for module, names in package._MODULES.items():
        defining = importlib.import_module(f"mt.tools.benchmark.{module}")
        for name in names:
            assert getattr(package, name) is getattr(defining, name), name
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError):
        package.no_such_name  # noqa: B018


def test_outside_a_checkout_results_go_under_the_current_folder(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a folder that is no git repository: the default result file is under that
    folder, with no git commit; a config path is read from it too, and a missing one is bad
    input that names it (nothing is looked up in mt's own source tree)."""
    from mt.commands import UsageError
    from mt.tools.benchmark.specs import spec_from_config

    monkeypatch.chdir(tmp_path)
    argv = ["train", "--smoke", "--threads", "1", "--data-dir", str(tiny_corpus), "--steps", "1",
            "--no-hf", "--precisions", "32-true"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((tmp_path / "benchmarks" / "results" / "train-cpu-smoke.json").read_text())
    assert result["benchmark"] == "train" and result["git_commit"] is None
    with pytest.raises(UsageError, match="configs/lstm-small.yaml: no such config file"):
        spec_from_config("configs/lstm-small.yaml")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "lstm-small.yaml").write_text((ROOT / "configs" / "lstm-small.yaml").read_text())
    assert spec_from_config("configs/lstm-small.yaml").arch == "lstm"


def test_git_commit_is_that_of_the_current_folders_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From any folder of a repository: its HEAD, `-dirty` when a tracked file changed, except
    under benchmarks/results/ (earlier outputs)."""
    import subprocess

    from mt.tools.benchmark.record import git_commit

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip

    (tmp_path / "sub").mkdir()
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "old.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    head = git("rev-parse", "HEAD")
    monkeypatch.chdir(tmp_path / "sub")
    assert git_commit() == head
    (tmp_path / "benchmarks" / "results" / "old.json").write_text("{\"new\": 1}\n")
    assert git_commit() == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit() == head + "-dirty"
    assert git_commit(tmp_path / "sub") == head + "-dirty"
