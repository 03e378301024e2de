"""cas under Dask (issue 21): a 5-step pipeline fanned out over parameter settings on a LocalCluster.

Two worker processes, one thread each, bound to loopback; the store a local
folder, or SeaweedFS. Tasks pass Refs between them; a second sweep is all
cache hits; results equal a single process; lineage complete; fsck clean.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed_steps as ds
import pytest
from conftest import BUCKET

import cas

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow  # a cluster of worker processes

from distributed import Client, LocalCluster  # noqa: E402


@pytest.fixture
def client() -> Iterator[Client]:
    """Made per test, after the SeaweedFS fixture (the workers inherit its AWS variables)."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _sweep_twice(client: Client, url: str, reference: list[float]) -> None:
    with cas.open(url) as store:
        s = ds.steps_of(store)

        def submit(fn: Any, *args: Any) -> Any:
            return client.submit(fn, *args, pure=False)

        assert len({*client.run(ds.worker_pid).values()}) == 2  # two worker processes
        for sweep in ("first", "second"):
            before = {r.hash for r in store.log()}
            finals = client.gather(ds.sweep_refs(submit, s))
            assert all(isinstance(r, cas.Ref) for r in finals)
            assert [store.get(r) for r in finals] == reference  # equal to a single process
            new = [r for r in store.log() if r.hash not in before]
            if sweep == "second":
                assert {r.status for r in new} == {"cached"} and len(new) == 5 * len(ds.SETTINGS)
            # values instead of Refs: the same cache keys, so all hits
            before = {r.hash for r in store.log()}
            values = client.gather([client.submit(ds.run_values, s, st, pure=False) for st in ds.SETTINGS])
            assert values == reference
            assert {r.status for r in store.log() if r.hash not in before} == {"cached"}
        ds.check_store(store, finals)


def test_a_sweep_on_a_local_folder(client: Client, tmp_path: Path) -> None:
    reference = ds.single_process(str(tmp_path / "reference"))
    url = str(tmp_path / "store")
    cas.open(url).close()
    _sweep_twice(client, url, reference)


def test_a_sweep_on_s3(seaweed: Any, client: Client, tmp_path: Path) -> None:
    reference = ds.single_process(str(tmp_path / "reference"))
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    cas.open(url).close()
    _sweep_twice(client, url, reference)


def test_a_store_and_a_step_travel_to_a_worker_and_back(client: Client, tmp_path: Path) -> None:
    with cas.open(tmp_path / "store") as store:
        step = store.step(ds.scale)
        step(ds.make_data(10, 1), 2.0)  # called once by the driver first (it used to stop pickling)
        worker_store = client.submit(lambda st: (st.url, st is st.step(ds.fit).store), store, pure=False).result()
        assert worker_store == (store.url, True)
        ref = client.submit(step.ref, store.put(ds.make_data(10, 1)), 2.0, pure=False).result()
        assert store.log()[0].status == "cached" and isinstance(ref, cas.Ref)
