"""Hostile input: fuzzed stored bytes, bombs, absurd sizes, deep nesting, bad names and paths, zip-slip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fuzz_decoders
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cas

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_cas_errors(data: bytes) -> None:
    fuzz_decoders.check(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(fuzz_decoders.seeds()), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
       st.integers(0, 10**6))  # fmt: skip
def test_mutated_valid_encodings_only_raise_cas_errors(seed: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    fuzz_decoders.check(bytes(data[: max(1, cut % (len(data) + 1))]))
    fuzz_decoders.check(bytes(data))


def test_every_decoder_accepts_its_own_seed_kind() -> None:
    """The fuzz targets are live: each seed decodes without error in at least one decoder."""
    for seed in fuzz_decoders.seeds():
        ok = 0
        for decode in fuzz_decoders.DECODERS.values():
            try:
                decode(seed)
                ok += 1
            except cas.CasError:
                pass
        assert ok, seed[:40]


@pytest.mark.slow  # libFuzzer: 100,000 runs in a child process
@pytest.mark.skipif(sys.platform != "linux", reason="atheris wheels are for Linux")
def test_atheris_finds_nothing(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(fuzz_decoders.seeds()):
        (corpus / f"seed{i}").write_bytes(seed)
    runs = os.environ.get("CAS_FUZZ_RUNS", "100000")
    result = subprocess.run(
        [sys.executable, str(TESTS / "fuzz_decoders.py"), f"-runs={runs}", "-rss_limit_mb=1536", "-timeout=10",
         "-max_total_time=300",
         "-max_len=4096", str(corpus)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}:{TESTS}"}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr


def test_a_decompression_bomb_is_refused() -> None:
    import zstandard

    bomb = zstandard.ZstdCompressor().compress(bytes(256 << 20))  # 256 MiB of zeros in ~8 KiB
    from cas import codec

    assert len(bomb) < (256 << 20) // 30000  # zstd's own best: a real frame, not a lie
    # Honest frames decode (bounded by the declared size); a frame claiming more than zstd can hold is refused.
    fake = codec.pack_header(codec.CODEC_ZSTD, 1 << 33) + zstandard.ZstdCompressor().compress(b"x" * 100)
    with pytest.raises(cas.CorruptObjectError, match="declares|can not hold"):
        codec.decode(fake)
    lying = bytearray(bomb)
    with pytest.raises(cas.CorruptObjectError):
        codec.decode(codec.pack_header(codec.CODEC_ZSTD, 1 << 20) + bytes(lying))  # frame says 256 MiB


def test_absurd_sizes_and_deep_nesting_are_refused() -> None:
    from cas import canonical, codec

    with pytest.raises(cas.CorruptObjectError, match="absurd"):
        codec.parse_header(codec.HEADER.pack(codec.MAGIC, 1, 0, 0, 1 << 60))
    deep = b"\x91" * 100_000 + b"\xc0"  # 100,000 nested one-element arrays
    with pytest.raises(cas.CorruptObjectError):
        canonical.decode(deep)
    from materializers import valuecodec

    with pytest.raises(cas.CorruptObjectError):
        valuecodec.decode(deep)
    with pytest.raises(cas.CorruptObjectError):
        valuecodec.decode(b"\xdd\xff\xff\xff\xff")  # an array claiming 4 billion items


@pytest.mark.parametrize(
    "ref", ["zz" * 32, "../../x", "/abs", "a\x00b", "a\nb", "-rf", "x@", "@1", "x@01", "a..b", "", "ab" * 200]
)
def test_bad_refs_are_refused_with_a_clear_error(local_store: cas.Store, ref: str) -> None:
    with pytest.raises((cas.InvalidNameError, cas.RefNotFoundError)):
        local_store.get(ref)
    with pytest.raises(cas.InvalidNameError):
        local_store.put(b"x", ref) if not ref.startswith("zz") else local_store.put(b"x", "ok", version="1x\x00")


def test_zip_slip_entries_are_refused_on_decode_and_on_restore(local_store: cas.Store, tmp_path: Path) -> None:
    from cas.objects import FileEntry, Tree

    for bad in ("../evil", "/etc/passwd", "a/../../b", "C:/x", "a\\b", "a/./b", "a//b", "x\x00y"):
        with pytest.raises(cas.CorruptObjectError):
            Tree.from_bytes(Tree((FileEntry(bad, 1, (), data=b"x"),)).to_bytes())
    # A symlink planted in the destination can not lead a restore outside it.
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "f.txt").write_text("data")
    ref = local_store.put(folder, "tree")
    target = tmp_path / "out"
    target.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / "sub").symlink_to(outside)
    with pytest.raises(cas.InvalidNameError, match="outside"):
        local_store.get(ref, path=target)
    assert list(outside.iterdir()) == []
