"""Benchmarks of the data pipeline, decoding speed, training throughput and throughput against
sentence length, with their context: ``mt benchmark data|decode|train|length`` (or
``scripts/benchmark.py``, ``python -m mt.tools.benchmark``).

Every job writes one JSON file, ``--out``, else ``benchmarks/results/{job}-{device tag}.json``
under the current folder (``--smoke`` runs write ``...-smoke.json``), holding the device (CPU model
or GPU name), core and thread counts, package versions, the git commit of the current folder's
repository (``-dirty`` when tracked files are modified; none outside a repository), the exact
command line, a UTC timestamp, the load average before and after, every setting, notes on the
method, and the measured numbers. What each number means is in ``benchmarks/README.md``. Nothing
is read from the source tree of ``mt`` itself: an installed package runs the same, and the default
model configs (``configs/*.yaml``) are found from the current folder, as ``mt fit`` finds them.

One module a job, beside what they share:

* :mod:`~mt.tools.benchmark.cli`: each job's options (typed functions) and :func:`main`;
* :mod:`~mt.tools.benchmark.run`: size defaults, running a job, writing its result file;
* :mod:`~mt.tools.benchmark.record`: the environment (device, versions, git commit), JSON writing;
* :mod:`~mt.tools.benchmark.specs`: the model sizes measured (configs, tiny, large) and Marian;
* :mod:`~mt.tools.benchmark.common`: memory and timing helpers, autocast, ``transformers``;
* :mod:`~mt.tools.benchmark.data`: (a) the share of non-padding tokens in the data module's
  token-budget batches vs random fixed-size batches on a real corpus; (b) ``encode_corpus``
  throughput and the memory of one data-loader worker iterating a full epoch, on a large vs a
  small synthetic corpus;
* :mod:`~mt.tools.benchmark.decode`: sentences/s and generated tokens/s of greedy and beam search
  for both architectures, side by side with Hugging Face ``MarianMTModel.generate`` on a
  Transformer of the same size and vocabulary and CTranslate2 on its export, and the speed-up of
  KV-cache decoding over recomputing the prefix every step;
* :mod:`~mt.tools.benchmark.train`: forward + backward + AdamW step throughput on non-padding
  tokens, step time, peak memory, model FLOP/s (and MFU on a GPU with a known peak) for both
  architectures and Marian, eager and optionally ``torch.compile``-d;
* :mod:`~mt.tools.benchmark.length`: training tokens/s and peak memory on batches of one fixed
  sentence length L at an equal token budget, and decoding time per sentence against the output
  length (EOS banned), for every architecture and cell, recurrent ones with input feeding off and
  on; JSON + plot.

Models have random weights: the numbers measure speed, never quality. ``transformers`` is optional;
without it the Hugging Face rows are skipped with a printed note.

The public names of the former module ``mt.tools.benchmark`` (also ``mt.benchmark``) are still
importable from the package, on first use (so ``import mt.tools.benchmark`` loads no torch).
"""

from __future__ import annotations

from mt import _compat

__all__ = ["ModelSpec", "environment", "main", "non_padding_share", "write_result"]

#: module -> the public names it defines, importable from the package
_MODULES = {
    "cli": ("main", "run_benchmark", "BENCHMARKS", "BENCHMARK_HELP"),
    "run": ("run_job",),
    "record": ("PACKAGES", "SIMD_FLAGS", "cpu_model", "cpu_flags", "device_name", "device_tag",
               "package_versions", "git_commit", "environment", "default_output", "write_result"),
    "common": ("proc_status_kb", "reset_peak_rss", "synchronize", "autocast", "free_memory",
               "hf_available", "HF_MISSING", "hugging_face_rows"),
    "specs": ("Arch", "SMALL_CONFIGS", "ModelSpec", "spec_from_config", "SMOKE_SPECS",
              "LARGE_SPECS", "model_specs", "marian_for", "num_parameters"),
    "data": ("non_padding_share", "padding_benchmark", "write_synthetic_corpus", "MeasuringCollate",
             "worker_memory", "corpus_memory_benchmark", "run_data"),
    "decode": ("ctranslate2_available", "CT2_MISSING", "CT2_SYSTEMS", "DecodeBatch",
               "decode_batches", "NoEOS", "mt_search", "hf_search", "ct2_search",
               "export_for_decode", "greedy_without_cache", "time_decoding", "decode_speed",
               "time_systems", "run_decode"),
    "train": ("train_precisions", "training_batches", "make_optimizer", "mt_train_step",
              "hf_train_step", "time_training", "run_train"),
    "length": ("fixed_length_batch", "length_training", "length_decoding", "run_length",
               "plot_length"),
}  # fmt: skip

__getattr__, __dir__ = _compat.lazy_exports(
    globals(), {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}
)
