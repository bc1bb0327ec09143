"""Precision chosen for the machine (mt/precision.py)."""

import pytest

import mt.precision as precision
from mt.precision import resolve_precision


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: native)
    chosen, note = resolve_precision(None, "cpu")
    assert chosen == expected
    assert note is not None and expected in note


def test_explicit_precision_is_kept(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert resolve_precision("32-true", "cpu") == ("32-true", None)
    assert resolve_precision("bf16-mixed", "cpu") == ("bf16-mixed", None)


def test_forced_bf16_on_a_cpu_without_it_warns_but_runs(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    chosen, note = resolve_precision("bf16-mixed", "cpu")
    assert chosen == "bf16-mixed"
    assert note is not None and "warning" in note and "slower" in note


@pytest.mark.parametrize(
    "features, expected",
    [("fp asimd evtstrm aes bf16 i8mm", True), ("fp asimd evtstrm aes i8mm", False)],
)
def test_arm_bf16_flag_is_read_from_cpuinfo(monkeypatch, tmp_path, features, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nFeatures\t: {features}\nCPU implementer\t: 0x41\n")
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    monkeypatch.setattr(precision.platform, "machine", lambda: "aarch64")
    assert precision.cpu_supports_bf16() is expected


def test_cpuinfo_gives_model_and_flags_to_every_reader(monkeypatch, tmp_path):
    """One parse of /proc/cpuinfo serves precision and the benchmarks' environment record."""
    from mt.tools import benchmark

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 fma avx512_bf16 sse\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 fma avx512_bf16 sse\n"
    )
    info = precision.read_cpuinfo(cpuinfo)
    assert info.model == "AMD EPYC 9R14"
    assert info.flags == {"fpu", "avx2", "fma", "avx512_bf16", "sse"}
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    assert benchmark.cpu_model() == "AMD EPYC 9R14"
    assert benchmark.cpu_flags() == ["avx2", "fma", "avx512_bf16"]  # SIMD_FLAGS' order
    missing = precision.read_cpuinfo(tmp_path / "none")
    assert missing.model is None and missing.flags == frozenset()
