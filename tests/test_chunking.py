import os

from hypothesis import given, settings
from hypothesis import strategies as st

from cas.chunking import ChunkParams, cut_ends, stitch

SMALL = ChunkParams(min_size=256, avg_size=512, max_size=2048)


def sequential(params: ChunkParams, data: bytes) -> list[int]:
    return cut_ends(params, memoryview(data), 0, len(data))


def regional(params: ChunkParams, data: bytes, region: int) -> list[int]:
    view = memoryview(data)
    cuts: list[int] = []
    prev = 0
    for start in range(0, len(data), region):
        end = min(start + region, len(data))
        candidates = cut_ends(params, view, start, end)
        found = stitch(params, view, prev, end, candidates, end == len(data))
        cuts += found
        if found:
            prev = found[-1]
    return cuts


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=40_000), st.integers(3000, 20_000))
def test_regions_stitch_to_the_sequential_cuts(data: bytes, region: int) -> None:
    assert regional(SMALL, data, region) == sequential(SMALL, data)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 255), st.integers(10_000, 60_000), st.integers(3000, 9000))
def test_uniform_data_never_syncs_but_still_matches(byte: int, size: int, region: int) -> None:
    data = bytes([byte]) * size
    assert regional(SMALL, data, region) == sequential(SMALL, data)


def test_default_params_on_real_sized_data() -> None:
    data = os.urandom(5 << 20)
    params = ChunkParams()
    cuts = sequential(params, data)
    assert regional(params, data, 1 << 20) == cuts
    sizes = [b - a for a, b in zip([0] + cuts[:-1], cuts, strict=False)]
    assert max(sizes) <= params.max_size
    assert min(sizes[:-1]) >= params.min_size


def test_an_insertion_only_changes_nearby_chunks() -> None:
    data = os.urandom(4 << 20)
    edited = data[: 2 << 20] + b"inserted" + data[2 << 20 :]
    params = ChunkParams()

    def chunks(d: bytes) -> set[bytes]:
        cuts = sequential(params, d)
        return {d[a:b] for a, b in zip([0] + cuts[:-1], cuts, strict=False)}

    before, after = chunks(data), chunks(edited)
    assert len(after - before) <= 3


def test_params_config_roundtrip() -> None:
    params = ChunkParams()
    assert ChunkParams.from_config(params.to_config()) == params
