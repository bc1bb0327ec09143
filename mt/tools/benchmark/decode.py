"""``mt benchmark decode``: sentences/s and generated tokens/s of greedy and beam search for both
architectures, side by side with Hugging Face ``MarianMTModel.generate`` on a Transformer of the
same size and vocabulary and with CTranslate2 on its export, and the speed-up of KV-cache decoding
over recomputing the prefix every step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mt.data.batching import decoding_batches, pad_sources
from mt.data.datamodule import TranslationDataModule
from mt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from mt.models.module import Seq2SeqModule
from mt.models.search import DEFAULT_SEARCH, beam_search, greedy_search
from mt.tools.benchmark.common import autocast, free_memory, hugging_face_rows, synchronize
from mt.tools.benchmark.specs import marian_for, model_specs, num_parameters


def ctranslate2_available() -> bool:
    """Whether ``ctranslate2`` (the ``export`` extra, which ``make install`` installs) imports."""
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


CT2_MISSING = (
    "ctranslate2 is not installed: the CTranslate2 rows are skipped (pip install -e '.[export]')"
)
#: The CTranslate2 rows of ``decode``: system name -> the export's weight type.
CT2_SYSTEMS = {"ct2-float32": "none", "ct2-int8": "int8"}


@dataclass
class DecodeBatch:
    """A source batch (longest first) and the number of tokens every system generates for it."""

    src: Tensor  # (B, S)
    src_pad_mask: Tensor  # (B, S)
    steps: int


def decode_batches(
    sources: Sequence[Sequence[int]], max_tokens: int, max_len_a: float, max_len_b: float
) -> list[DecodeBatch]:
    """The batches of :func:`mt.data.batching.decoding_batches` (longest first, rows x longest source
    <= max_tokens), as ``mt.tools.translate.Translator`` cuts them; ``steps`` = ``int(a * longest +
    b)`` (EOS counted)."""
    batches = []
    for rows in decoding_batches([len(s) for s in sources], max_tokens):
        src = pad_sources([sources[i] for i in rows])  # (B, S)
        steps = max(1, int(max_len_a * src.size(1) + max_len_b))
        batches.append(DecodeBatch(src, src == PAD_ID, steps))
    return batches


class NoEOS(nn.Module):
    """Wraps a model so that it never emits EOS: every hypothesis runs to the length cap.

    Random weights would otherwise end sentences at arbitrary points and the systems compared
    would generate different numbers of tokens; with EOS banned both generate exactly the cap.
    """

    def __init__(self, model: Seq2SeqModule) -> None:
        super().__init__()
        self.model = model

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> Any:
        return self.model.encode(src, src_pad_mask)

    def decode_step(self, prev_tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        log_probs, state = self.model.decode_step(prev_tokens, state)
        eos = torch.tensor([EOS_ID], device=log_probs.device)
        return log_probs.index_fill_(1, eos, float("-inf")), state


def mt_search(model: Seq2SeqModule, beam: int) -> Callable[[DecodeBatch], list[list[int]]]:
    wrapped = NoEOS(model)

    def run(b: DecodeBatch) -> list[list[int]]:
        if beam == 1:
            hyps = greedy_search(wrapped, b.src, b.src_pad_mask, max_len_a=0.0, max_len_b=b.steps)
            return [h.tokens for h in hyps]
        nbest = beam_search(
            wrapped, b.src, b.src_pad_mask, beam_size=beam,
            length_penalty=DEFAULT_SEARCH.length_penalty, max_len_a=0.0, max_len_b=b.steps,
        )
        return [n[0].tokens for n in nbest]

    return run


def hf_search(model: nn.Module, beam: int) -> Callable[[DecodeBatch], list[list[int]]]:
    def run(b: DecodeBatch) -> list[list[int]]:
        out = model.generate(
            input_ids=b.src,
            attention_mask=(~b.src_pad_mask).long(),
            num_beams=beam,
            do_sample=False,
            max_new_tokens=b.steps,
            min_new_tokens=b.steps,
            length_penalty=DEFAULT_SEARCH.length_penalty,
            early_stopping=False,
            use_cache=True,
        )  # (B, 1 + steps): the decoder start token, then the generated ones
        return out[:, 1:].tolist()

    return run


def ct2_search(
    model_dir: Path, tokenizer: Tokenizer, beam: int, device: torch.device, threads: int
) -> Callable[[DecodeBatch], list[list[int]]]:
    """Decode with CTranslate2 on an exported folder: the same sources (as sentencepiece pieces;
    CTranslate2 appends the EOS) and, with EOS banned until then (``min_decoding_length``),
    exactly ``steps`` tokens, as the other systems."""
    import ctranslate2

    translator = ctranslate2.Translator(
        str(model_dir), device=device.type, inter_threads=1, intra_threads=threads
    )
    piece_ids = {tokenizer.id_to_piece(i): i for i in range(tokenizer.vocab_size)}

    def run(b: DecodeBatch) -> list[list[int]]:
        sources = [
            [tokenizer.id_to_piece(i) for i in row if i not in (PAD_ID, EOS_ID)]
            for row in b.src.tolist()
        ]
        results = translator.translate_batch(
            sources, beam_size=beam, length_penalty=DEFAULT_SEARCH.length_penalty,
            max_decoding_length=b.steps,
            min_decoding_length=b.steps, max_input_length=0, max_batch_size=0,
        )  # fmt: skip
        return [[piece_ids[p] for p in r.hypotheses[0]] for r in results]

    return run


def export_for_decode(model: Seq2SeqModule, tokenizer: Tokenizer, folder: Path) -> dict[str, Path]:
    """The CTranslate2 folders of ``model`` (random weights) for the ``CT2_SYSTEMS`` rows."""
    from mt.tools.export import export_ctranslate2

    model.tokenizer = tokenizer
    return {
        name: export_ctranslate2(model, folder / name, quantization=quantization)
        for name, quantization in CT2_SYSTEMS.items()
    }


@torch.no_grad()
def greedy_without_cache(model: Seq2SeqModule, b: DecodeBatch) -> list[list[int]]:
    """Greedy decoding that recomputes the whole prefix with ``model.decode`` at every step
    (no self-attention KV cache; the encoder and its cross-attention keys/values run once)."""
    state = model.encode(b.src, b.src_pad_mask)
    prefix = torch.full((b.src.size(0), 1), BOS_ID, dtype=torch.long, device=b.src.device)
    banned = torch.tensor([PAD_ID, BOS_ID, EOS_ID], device=b.src.device)
    for _ in range(b.steps):
        logits = model.decode(prefix, state)[:, -1]  # (B, V) of the last position
        log_probs = F.log_softmax(logits.float(), dim=-1).index_fill(1, banned, float("-inf"))
        prefix = torch.cat([prefix, log_probs.argmax(dim=1, keepdim=True)], dim=1)  # (B, t + 1)
    return prefix[:, 1:].tolist()


def time_decoding(
    run: Callable[[DecodeBatch], list[list[int]]],
    batches: Sequence[DecodeBatch],
    device: torch.device,
) -> tuple[dict[str, float], list[list[int]]]:
    """Decode every batch once after one warm-up batch (the smallest); speed and outputs."""
    with torch.inference_mode(), autocast(device):
        run(batches[-1])
        synchronize(device)
        outputs: list[list[int]] = []
        start = time.perf_counter()
        for b in batches:
            outputs += run(b)
        synchronize(device)
        seconds = time.perf_counter() - start
    return decode_speed(len(outputs), sum(len(o) for o in outputs), seconds), outputs


def decode_speed(sentences: int, tokens: int, seconds: float) -> dict[str, Any]:
    """A decode row: counts, seconds and the two rates."""
    return {
        "sentences": sentences,
        "generated_tokens": tokens,
        "seconds": seconds,
        "sentences_per_s": sentences / seconds,
        "tgt_tokens_per_s": tokens / seconds,
    }


def time_systems(
    systems: dict[str, Callable[[DecodeBatch], list[list[int]]]],
    batches: Sequence[DecodeBatch],
    device: torch.device,
    repeats: int,
) -> dict[str, tuple[dict[str, Any], list[list[int]]]]:
    """``time_decoding`` of every system ``repeats`` times, the systems taking turns (a, b, a,
    b, ...), so that a machine whose speed drifts during the run slows them alike. Each row
    reports the median seconds (and every run's); outputs are those of the first run."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    outputs: dict[str, list[list[int]]] = {}
    for _ in range(repeats):
        for name, run in systems.items():
            row, out = time_decoding(run, batches, device)
            runs[name].append(row)
            outputs.setdefault(name, out)
    results = {}
    for name, rows in runs.items():
        seconds = sorted(r["seconds"] for r in rows)[len(rows) // 2]  # the median (upper)
        row = decode_speed(rows[0]["sentences"], rows[0]["generated_tokens"], seconds)
        row["seconds_runs"] = [r["seconds"] for r in rows]
        results[name] = (row, outputs[name])
    return results


def _load_split_sources(args: argparse.Namespace) -> tuple[list[np.ndarray], Tokenizer]:
    """The source ids of the first ``--sentences`` lines of the test split, and the tokenizer."""
    dm = TranslationDataModule(
        data_dir=args.data_dir, vocab_size=args.vocab_size, num_workers=0, seed=args.seed
    )
    dm.setup("test")
    src = dm.datasets["test"].src
    n = len(src) if args.sentences is None else min(args.sentences, len(src))
    return [np.asarray(src.ids(i)) for i in range(n)], dm.tokenizer


def run_decode(args: argparse.Namespace, device: torch.device) -> tuple[dict, list[str]]:
    sources, tokenizer = _load_split_sources(args)
    vocab = tokenizer.vocab_size
    batches = decode_batches(sources, args.max_tokens, args.max_len_a, args.max_len_b)
    batches = [DecodeBatch(b.src.to(device), b.src_pad_mask.to(device), b.steps) for b in batches]
    kv_batches = batches
    if args.kv_sentences is not None and args.kv_sentences < len(sources):
        kv_batches = decode_batches(
            sources[: args.kv_sentences], args.max_tokens, args.max_len_a, args.max_len_b
        )
        kv_batches = [
            DecodeBatch(b.src.to(device), b.src_pad_mask.to(device), b.steps) for b in kv_batches
        ]
    notes = [
        "Random weights. EOS is banned for every system (ours through a wrapper around "
        "decode_step, Hugging Face through min_new_tokens = max_new_tokens), so every sentence of "
        "a batch generates exactly steps = int(max_len_a * longest source + max_len_b) tokens in "
        "all systems: the same work, counted as generated tokens.",
        "Batches: sources sorted longest first and cut at rows x longest source (EOS included) "
        "<= max_tokens, as mt.tools.translate.Translator does; the same batches for every system. One "
        "warm-up batch (the smallest) is decoded before timing.",
        f"Each system decodes all batches {args.repeats} times, the systems taking turns; rows "
        "report the median seconds (seconds_runs lists every run).",
        "Beam search: ours with length penalty 1.0, Hugging Face num_beams=K, length_penalty=1.0, "
        "early_stopping=False, use_cache=True.",
        f"Precision: {'bf16 autocast' if device.type == 'cuda' else 'fp32'}, torch.inference_mode "
        "for both.",
        "kv_cache: greedy mt.models.search.greedy_search (decode_step with a KV cache) vs a loop that "
        "calls model.decode on the whole prefix at every step (the encoder and the "
        "cross-attention keys/values still computed once); same batches and steps; "
        "identical_outputs compares their tokens.",
    ]
    use_hf = hugging_face_rows(args, notes)
    use_ct2 = ctranslate2_available()
    threads = args.threads or torch.get_num_threads()
    notes.append(
        "CTranslate2 rows (ct2-float32, ct2-int8): the same randomly initialised Transformer "
        "exported with mt export (float32 weights, int8 weights), run by ctranslate2.Translator "
        f"with intra_threads={threads} (the torch threads of the other rows), inter_threads=1, "
        "on the same batches (max_batch_size=0: no re-batching); EOS is banned until the "
        "same number of steps (min_decoding_length = max_decoding_length = steps); the ids "
        "are turned into sentencepiece pieces and back inside the timed call, as a user's "
        "translation does."
        if use_ct2
        else CT2_MISSING
    )
    if not use_ct2:
        print(f"[decode] note: {CT2_MISSING}", flush=True)
    results: dict[str, Any] = {
        "split": f"{args.data_dir}/test_2016_flickr (first {len(sources)} lines), de->en",
        "sentences": len(sources),
        "batches": len(batches),
        "max_tokens": args.max_tokens,
        "generated_tokens_per_sentence_mean": sum(b.steps * b.src.size(0) for b in batches)
        / len(sources),
        "models": [],
    }
    for spec in model_specs(args, device):
        torch.manual_seed(args.seed)
        model = spec.build(vocab).to(device).eval()
        entry: dict[str, Any] = {
            "name": spec.name,
            "arch": spec.arch,
            "config": spec.source,
            "init_args": spec.init_args,
            "parameters": num_parameters(model),
            "rows": [],
        }
        hf_model = None
        if use_hf and spec.arch == "transformer":
            torch.manual_seed(args.seed)
            hf_model = marian_for(spec, vocab).to(device).eval()
            entry["hf_parameters"] = num_parameters(hf_model)
        ct2_dirs: dict[str, Path] = {}
        ct2_tmp = None  # the exported folders, removed with it
        if use_ct2 and spec.arch == "transformer":
            ct2_tmp = tempfile.TemporaryDirectory(prefix="mt-bench-ct2-")
            ct2_dirs = export_for_decode(model, tokenizer, Path(ct2_tmp.name))
        for beam in args.beams:
            systems = {"mt": mt_search(model, beam)}
            if hf_model is not None:
                systems["hf-marian"] = hf_search(hf_model, beam)
            for name, folder in ct2_dirs.items():
                systems[name] = ct2_search(folder, tokenizer, beam, device, threads)
            timed = time_systems(systems, batches, device, args.repeats)
            mt_out = timed["mt"][1]
            for name, (row, out) in timed.items():
                if name in ct2_dirs:  # the same model: how often its tokens are mt's
                    row["same_tokens_as_mt"] = sum(
                        a == b for a, b in zip(out, mt_out, strict=True)
                    ) / len(out)
                entry["rows"].append({"system": name, "beam": beam, **row})
                versus = ""
                if hf_model is not None and name != "hf-marian":
                    speedup = timed["hf-marian"][0]["seconds"] / row["seconds"]
                    entry.setdefault("speedup_over_hf", {}).setdefault(name, {})[
                        f"beam{beam}"
                    ] = speedup
                    versus = f"  ({name} is {speedup:.2f}x HF)"
                print(f"[decode] {spec.name} {name} beam {beam}: {_fmt_decode(row)}{versus}",
                      flush=True)  # fmt: skip
            if hf_model is not None:  # the key earlier result files have
                entry["speedup_mt_over_hf"] = entry["speedup_over_hf"]["mt"]
        if spec.arch == "transformer" and not args.no_kv_check:
            cached, cached_out = time_decoding(mt_search(model, 1), kv_batches, device)
            plain, plain_out = time_decoding(
                lambda b, m=model: greedy_without_cache(m, b), kv_batches, device
            )
            same = sum(a == b for a, b in zip(cached_out, plain_out, strict=True))
            entry["kv_cache"] = {
                "with_cache": cached,
                "recompute_prefix": plain,
                "speedup": plain["seconds"] / cached["seconds"],
                "identical_outputs": same / len(cached_out),
            }
            print(
                f"[decode] {spec.name} KV cache speed-up {entry['kv_cache']['speedup']:.2f}x "
                f"(identical outputs {same}/{len(cached_out)})",
                flush=True,
            )
        results["models"].append(entry)
        if ct2_tmp is not None:
            ct2_tmp.cleanup()
        del model, hf_model
        free_memory(device)
    return results, notes


def _fmt_decode(row: dict[str, float]) -> str:
    return (
        f"{row['sentences_per_s']:.1f} sent/s, {row['tgt_tokens_per_s']:.0f} tok/s "
        f"({row['seconds']:.2f} s)"
    )

