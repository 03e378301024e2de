"""cas://<ref>/<path>: artifacts' files through fsspec, read by pandas and pyarrow, read-only, verified."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

import cas
from cas.filesystem import CasFileSystem

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
ds = pytest.importorskip("pyarrow.dataset")


@pytest.fixture
def raw(tmp_path: Path) -> tuple[cas.Store, str, object]:
    url = str(tmp_path / "store")
    store = cas.open(url)
    src = tmp_path / "raw"
    (src / "sub").mkdir(parents=True)
    frame = pd.DataFrame({"a": range(200_000), "b": [i / 3 for i in range(200_000)]})
    frame.to_parquet(src / "data.parquet")  # > 1 MiB: chunked
    (src / "sub" / "note.txt").write_text("hello")
    (src / "big.bin").write_bytes(os.urandom(3_000_000))
    store.put(src, "raw")
    store.put(b"another", "team/blob")
    return store, url, frame


def test_pandas_and_pyarrow_read_artifact_files(raw: tuple[cas.Store, str, object]) -> None:
    store, url, frame = raw
    back = pd.read_parquet("cas://raw@1/data.parquet", storage_options={"store": url})
    pd.testing.assert_frame_equal(back, frame)
    fs = fsspec.filesystem("cas", store=store)
    table = ds.dataset("raw@1/data.parquet", filesystem=fs, format="parquet").to_table()
    assert table.num_rows == 200_000
    assert fs.cat("cas://raw/sub/note.txt") == b"hello"  # the latest version
    assert fs.cat(f"cas://{store.resolve('raw').hash}/sub/note.txt") == b"hello"  # by hash


def test_listing_names_folders_and_files(raw: tuple[cas.Store, str, object]) -> None:
    store, _, _ = raw
    fs = CasFileSystem(store=store)
    assert sorted(fs.ls("cas://", detail=False)) == ["raw", "team/blob"]
    assert fs.ls("cas://raw@1", detail=False) == ["raw@1/sub", "raw@1/big.bin", "raw@1/data.parquet"]
    assert fs.ls("cas://raw@1/sub", detail=False) == ["raw@1/sub/note.txt"]
    assert fs.info("cas://raw@1/big.bin") == {"name": "raw@1/big.bin", "size": 3_000_000, "type": "file"}
    assert fs.isdir("cas://raw@1/sub") and fs.isfile("cas://raw@1/sub/note.txt")
    assert fs.cat("cas://team/blob@1/data") == b"another"  # a name with '/' ends at its @version
    with pytest.raises(FileNotFoundError):
        fs.info("cas://raw@1/nope")
    with pytest.raises(FileNotFoundError):
        fs.cat("cas://missing@1/x")


def test_range_reads_return_exactly_those_bytes(raw: tuple[cas.Store, str, object]) -> None:
    store, _, _ = raw
    fs = CasFileSystem(store=store)
    whole = store.reader("raw").read_bytes("big.bin")
    for start, end in [(0, 10), (100_000, 1_900_000), (2_999_990, 3_000_000), (2_999_990, 5_000_000), (-5, None)]:
        expect = whole[start:end]
        assert fs.cat_file("cas://raw@1/big.bin", start=start, end=end) == expect
    with fs.open("cas://raw@1/big.bin", block_size=65536) as f:
        f.seek(1_234_567)
        assert f.read(300_000) == whole[1_234_567:1_534_567]


def test_nothing_can_be_written(raw: tuple[cas.Store, str, object]) -> None:
    store, _, _ = raw
    fs = CasFileSystem(store=store)
    with pytest.raises(cas.ReadOnlyStoreError):
        fs.open("cas://raw@1/new.txt", "wb")
    for call in (
        lambda: fs.rm("cas://raw@1/big.bin"),
        lambda: fs.mkdir("cas://x"),
        lambda: fs.pipe_file("cas://x", b""),
    ):
        with pytest.raises(cas.ReadOnlyStoreError):
            call()


def test_a_damaged_chunk_is_never_returned(raw: tuple[cas.Store, str, object], tmp_path: Path) -> None:
    store, url, _ = raw
    # Flip one byte of every pack holding the big file's chunks: a range read must refuse, not return them.
    for pack in (tmp_path / "store" / "packs").rglob("*"):
        if pack.is_file():
            data = bytearray(pack.read_bytes())
            data[len(data) // 3] ^= 0xFF
            pack.write_bytes(bytes(data))
    fs = CasFileSystem(store=cas.open(url))
    with pytest.raises(cas.IntegrityError):
        fs.cat("cas://raw@1/big.bin")


def test_registered_for_fsspec_in_a_fresh_process(raw: tuple[cas.Store, str, object]) -> None:
    _, url, _ = raw
    code = (
        "import fsspec, pandas as pd\n"
        f"df = pd.read_parquet('cas://raw@1/data.parquet', storage_options={{'store': {url!r}}})\n"
        "print(len(df))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "200000"
