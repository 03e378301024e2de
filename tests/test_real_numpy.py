"""numpy subclasses at real sizes: masked arrays, matrices and recarrays come back as themselves.

Issue 16 item 2: a masked array used to lose its mask silently, a matrix came
back as an ndarray (``m*m`` turning element-wise) and a recarray lost its field
attributes. Thresholds crossed: the small cases are stored inline, the large
masked array (8 MiB of data) is above the 1 MiB chunking threshold.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cas
from cas.hashing import to_hex
from cas.objects import Artifact
from cas.trees import TreeWriter
from materializers import valuecodec

ROOT = Path(__file__).resolve().parent.parent


def plant(store: cas.Store, files: dict[str, bytes], materializer: str, python_type: str) -> str:
    """Hash-valid files and an artifact naming them, as another writer of the store could put them."""
    writer = TreeWriter(store.objects, store.config.chunking)
    for path, data in files.items():
        writer.write_bytes(path, data)
    tree = writer.finish()
    tree_digest = store.objects.put_object(tree.to_bytes())
    artifact = Artifact(tree_digest, python_type, materializer, "1", tree.size, {}, {})
    digest = store.objects.put_object(artifact.to_bytes())
    store.objects.flush()
    return to_hex(digest)


def masked_same(a: np.ma.MaskedArray, b: np.ma.MaskedArray) -> None:
    assert type(a) is type(b) is np.ma.MaskedArray
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.ma.getdata(a).tobytes() == np.ma.getdata(b).tobytes()
    assert (a.mask is np.ma.nomask) == (b.mask is np.ma.nomask)
    assert np.array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b))
    assert a.hardmask == b.hardmask
    assert np.asarray(a.fill_value).tobytes() == np.asarray(b.fill_value).tobytes()


def test_a_small_masked_array_keeps_its_mask(local_store: cas.Store) -> None:
    arr = np.ma.masked_array([20.0, 22.0, -999.0, 24.0], mask=[False, False, True, False], fill_value=-999.0)
    back = local_store.get(local_store.put(arr))
    masked_same(back, arr)
    assert back.mean() == 22.0
    assert local_store.info(local_store.put(arr)).metadata["masked"] == 1


def test_a_masked_array_above_the_chunking_threshold(local_store: cas.Store) -> None:
    rng = np.random.default_rng(16)
    data = rng.normal(22.0, 1.0, (1024, 1024))  # 8 MiB: chunked
    data[::7] = -1e6
    arr = np.ma.masked_less(data, -1e5)
    arr.harden_mask()
    back = local_store.get(local_store.put(arr))
    masked_same(back, arr)
    assert back.mean() == arr.mean() and abs(back.mean() - 22.0) < 0.1
    # The data dedups with the same array stored unmasked: the mask (1 MiB) is the only new data.
    plain = local_store.put(data)
    reader, plain_reader = local_store.reader(local_store.put(arr)), local_store.reader(plain)
    assert reader.size("data") == plain_reader.size("data") == data.nbytes
    assert reader.size("mask") == data.size


def test_masked_layouts_nomask_fill_values_and_structured_dtypes(local_store: cas.Store) -> None:
    base = np.arange(12.0).reshape(3, 4)
    structured = np.zeros(3, dtype=[("a", "<i4"), ("b", ">f8", (2,))])
    structured["a"] = [1, 2, 3]
    smask = np.zeros(3, dtype=np.ma.make_mask_descr(structured.dtype))
    smask["a"][1] = True
    cases = [
        np.ma.masked_array(base),  # nomask
        np.ma.masked_array(base, mask=np.zeros_like(base, dtype=bool)),  # an all-False mask, not nomask
        np.ma.masked_greater(np.asfortranarray(base), 5),  # Fortran order
        np.ma.masked_greater(base, 5)[:, ::2],  # a non-contiguous view
        np.ma.masked_array(np.array(["a", "bb", "ccc"]), mask=[0, 1, 0], fill_value="zz"),
        np.ma.masked_array(structured, mask=smask),
        np.ma.masked_array(np.zeros(2, dtype="<i4,>f8"), mask=[(0, 1), (1, 0)], fill_value=(9, 1.5)),
        np.ma.masked_array(np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]"), mask=[0, 1]),
        np.ma.masked_array(np.array(3.5), mask=True),  # 0-d
        np.ma.masked_array(np.zeros((0, 3))),
    ]
    read_fill = np.ma.masked_array(structured, mask=smask)
    assert read_fill.fill_value is not None  # reading it sets it: a structured fill with a sub-array is stored
    cases.append(read_fill)
    for arr in cases:
        masked_same(local_store.get(local_store.put(arr)), arr)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_matrix_and_recarray_come_back_as_themselves(local_store: cas.Store) -> None:
    m = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    back = local_store.get(local_store.put(m))
    assert type(back) is np.matrix and np.array_equal(back, m)
    assert np.array_equal(back * back, np.array([[7.0, 10.0], [15.0, 22.0]]))  # a matrix product
    rec = np.rec.fromarrays([np.arange(100_000), np.linspace(0, 1, 100_000)], names="step,loss")  # 1.6 MB: chunked
    back = local_store.get(local_store.put(rec))
    assert type(back) is np.recarray and back.dtype == rec.dtype
    assert np.array_equal(back.step, rec.step) and np.array_equal(back.loss, rec.loss)


class Tagged(np.ndarray):
    pass


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_other_subclasses_are_refused_so_pickle_can_take_over(local_store: cas.Store) -> None:
    tagged = np.arange(4.0).view(Tagged)
    with pytest.raises(cas.UnsupportedTypeError, match="allow_pickle"):
        local_store.put(tagged)
    back = local_store.get(local_store.put(tagged, allow_pickle=True), trust_pickle=True)
    assert type(back) is Tagged
    sub_masked = np.ma.masked_array(np.matrix([[1.0, 2.0]]), mask=[[0, 1]])  # a masked matrix
    with pytest.raises(cas.UnsupportedTypeError):
        local_store.put(sub_masked)


def test_artifacts_written_before_load_as_before(local_store: cas.Store) -> None:
    """The files cas.numpy 1 wrote for a subclass (``subclass`` a bool) still load, as a plain ndarray."""
    for subclass in (True, False, None):
        meta = {"descr": "<f8", "shape": [2, 2], "order": "C", "scalar": False, "subclass": subclass}
        ref = plant(local_store, {"meta": valuecodec.encode(meta), "data": np.arange(4.0).tobytes()}, "cas.numpy",
                    "numpy.matrix")  # fmt: skip
        back = local_store.get(ref)
        assert type(back) is np.ndarray and back.tolist() == [[0.0, 1.0], [2.0, 3.0]]
    # A plain array is written byte for byte as before (same artifact hash as before the change).
    assert local_store.reader(local_store.put(np.arange(4.0))).read_bytes("meta") == valuecodec.encode(
        {"descr": "<f8", "shape": [4], "order": "C", "scalar": False, "subclass": False})  # fmt: skip


def masked_files(mask: bytes | None, **changes: object) -> dict[str, bytes]:
    meta = {"descr": "<f8", "shape": [4], "order": "C", "nomask": False, "hard_mask": False, "fill_value": None}
    meta.update(changes)
    files = {"meta": valuecodec.encode(meta), "data": np.arange(4.0).tobytes()}
    if mask is not None:
        files["mask"] = mask
    return files


@pytest.mark.parametrize("files", [
    masked_files(bytes(3)),  # mask shorter than the data's shape
    masked_files(bytes(2**20)),  # mask far larger
    masked_files(bytes([0, 2, 0, 0])),  # not a bool
    masked_files(None),  # mask missing
    masked_files(bytes(4), nomask=True),  # mask present though there is none
    masked_files(bytes(4), fill_value=b"\0"),  # fill value of the wrong size
    masked_files(bytes(4), hard_mask=1),
    masked_files(bytes(4), shape=[2**40]),  # a huge declared shape
], ids=["short", "long", "not-bool", "missing", "unexpected", "fill", "hard", "huge"])  # fmt: skip
def test_hostile_masked_artifacts_give_typed_errors(local_store: cas.Store, files: dict[str, bytes]) -> None:
    ref = plant(local_store, files, "cas.numpy.masked", "numpy.ma.MaskedArray")
    with pytest.raises(cas.CorruptObjectError):
        local_store.get(ref)


def test_hostile_subclass_names_give_typed_errors(local_store: cas.Store) -> None:
    for subclass, shape in (("memmap", [4]), ("os.system", [4]), ("matrix", [4]), (7, [4])):
        meta = {"descr": "<f8", "shape": shape, "order": "C", "scalar": False, "subclass": subclass}
        ref = plant(local_store, {"meta": valuecodec.encode(meta), "data": bytes(32)}, "cas.numpy", "numpy.ndarray")
        with pytest.raises(cas.CorruptObjectError):
            local_store.get(ref)


def test_a_fresh_process_finds_the_masked_materializer(local_store: cas.Store) -> None:
    ref = local_store.put(np.ma.masked_array([1.0, 2.0], mask=[0, 1]), "m")
    code = f"""
        import cas
        store = cas.open({local_store.url!r}, create=False)
        back = store.get("m")
        print(type(back).__name__, back.mask.tolist())
        import numpy as np
        print(store.info(store.put(np.ma.masked_array([3.0], mask=[1]))).materializer)
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["MaskedArray", "[False,", "True]", "cas.numpy.masked"]
    assert ref


def test_memmaps_are_stored_as_their_data(local_store: cas.Store, tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(10.0))
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert type(local_store.get(local_store.put(mapped))) is np.ndarray
    back = local_store.get(local_store.put(np.ma.masked_greater(mapped, 5)))
    assert type(back) is np.ma.MaskedArray and back.count() == 6
