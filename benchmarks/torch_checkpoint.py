"""A torch checkpoint: put/get of a state_dict beside torch.save/torch.load, and a 1%-changed re-save.

The state_dict is float32 tensors of 4 MiB (1024 x 1024) plus a bias each,
``size`` bytes in all (``--size``; 256 MiB by default, as the issue's 500 MB
checkpoint halved to fit CI). Each side is alternated with the other, and
medians are reported. The re-save changes 1% of the tensors (at least one)
and counts the bytes the store grew by; ``torch.save`` of the same dict
writes a whole new file, the reference.

Targets: put >= 0.3x torch.save and get >= 0.4x torch.load. torch.save only
writes to the page cache; a put also hashes (BLAKE3) and chunks every byte, so
a second row puts the same weights as numpy arrays (zero-copy), the store's own
floor: the difference between the two rows is what the safetensors files cost
(one copy of each tensor into its file's buffer).
"""

from __future__ import annotations

import resource
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cas
from benchmarks.harness import Row, alternate, median, remove, throughput_row, tree_size

DEFAULT = 256 << 20


def _state(size: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(0)
    count = max(1, size // (4 << 20))
    state: OrderedDict[str, Any] = OrderedDict()
    for i in range(count):
        state[f"layers.{i}.weight"] = torch.randn(1024, 1024, generator=generator)
        state[f"layers.{i}.bias"] = torch.randn(1024, generator=generator)
    return state


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def checkpoint(work: Path, size: int, repeats: int) -> list[Row]:
    """put/get of a state_dict vs torch.save/torch.load(weights_only=True); bytes stored by a 1%-changed re-save."""
    try:
        import torch
    except ImportError:
        return [Row("torch checkpoint (torch not installed)", 0.0, "", 0.0, 0.0)]
    size = size if size != 1024 << 20 else DEFAULT  # the suite's default size is too much for a state_dict here
    state = _state(size)
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    store_dir, plain = work / "store", work / "plain.pt"
    cpu: list[float] = []

    def cas_put() -> None:
        start = _cpu()
        with cas.open(store_dir) as store:
            store.put(state, "ckpt")
        cpu.append(_cpu() - start)

    arrays = [t.numpy() for t in state.values()]  # the same bytes, zero-copy: the store's own baseline

    def numpy_put() -> None:
        with cas.open(store_dir) as store:
            store.put(arrays, "arrays")

    times = alternate(
        {
            "cas": (cas_put, lambda: remove(store_dir)),
            "plain": (lambda: torch.save(state, plain), lambda: remove(plain)),
            "numpy": (numpy_put, lambda: remove(store_dir)),
        },
        repeats,
    )
    label = f"torch state_dict ({nbytes >> 20} MiB, {len(state)} tensors)"
    put_row = throughput_row(f"put {label}", nbytes, times["cas"], times["plain"], "torch.save", 0.3)
    put_row.notes["cpu_seconds_per_gib"] = median(cpu) / (nbytes / (1 << 30))
    numpy_row = throughput_row(f"put the same weights as numpy arrays ({nbytes >> 20} MiB)", nbytes, times["numpy"],
                               times["plain"], "torch.save", None)  # fmt: skip
    torch.save(state, plain)
    with cas.open(store_dir) as store:
        store.put(state, "ckpt")
        put_row.stored_bytes = tree_size(store_dir)
        get_times = alternate(
            {
                "cas": (lambda: store.get("ckpt"), None),
                "plain": (lambda: torch.load(plain, weights_only=True), None),
            },
            repeats,
        )
        got = store.get("ckpt")
        assert all(torch.equal(got[k], v) for k, v in state.items()), "get of the state_dict returned something else"
    get_row = throughput_row(f"get {label}", nbytes, get_times["cas"], get_times["plain"], "torch.load", 0.4)
    rows = [put_row, numpy_row, get_row, Row(f"put CPU-seconds per GiB ({label})", put_row.notes["cpu_seconds_per_gib"],
                                  "s/GiB", min(cpu) / (nbytes / (1 << 30)), max(cpu) / (nbytes / (1 << 30)))]  # fmt: skip
    rows.append(_resave(store_dir, state, nbytes, label))
    remove(store_dir)
    remove(plain)
    return rows


def _resave(store_dir: Path, state: Any, nbytes: int, label: str) -> Row:
    """Bytes added by re-putting the checkpoint with 1% of its tensors changed (a fine-tuning step)."""
    changed = OrderedDict(state)
    keys = list(changed)
    count = max(1, len(keys) // 100)
    weights = [k for k in keys if k.endswith(".weight")]
    chosen = weights[:: max(1, len(weights) // count)][:count]
    for key in chosen:
        changed[key] = changed[key] + 1e-3
    changed_bytes = sum(changed[k].numel() * changed[k].element_size() for k in chosen)
    with cas.open(store_dir) as store:
        before = tree_size(store_dir)
        start = time.perf_counter()
        store.put(changed, "ckpt")
        seconds = time.perf_counter() - start
        added = tree_size(store_dir) - before
    share = added / nbytes * 100
    limit = max(3.0, 2 * changed_bytes / nbytes * 100)  # a few percent, or twice what changed
    row = Row(f"re-put, {len(chosen)} of {len(keys)} tensors changed: new bytes / size", share, "%", share, share,
              "torch.save", 100.0, share / 100, f"<= {limit:.3g}%", share <= limit, stored_bytes=added)  # fmt: skip
    row.notes.update({"changed_bytes": changed_bytes, "seconds": seconds})
    return row


WORKLOADS = {"torch": checkpoint}
