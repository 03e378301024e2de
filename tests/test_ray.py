"""cas under Ray (issue 21): the 5-step sweep on a local Ray instance kept to loopback.

Ray binds its servers to every interface when it finds a routable address,
whatever ``_node_ip_address`` says. So the sweep runs in a child process in
a network namespace of its own (``unshare --user --net``), where only the
loopback interface exists: nothing Ray opens can be reached from outside,
and the test checks that every socket listening there is on loopback. Where
unprivileged namespaces are not allowed, the test is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import distributed_steps as ds
import pytest

import cas

pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # starting Ray takes seconds

HERE = Path(__file__).parent
LOOPBACK = ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]")


def _isolated() -> list[str]:
    """The command prefix that runs a process with loopback as its only network; skip if there is none."""
    for tool in ("unshare", "ip", "ss"):
        if shutil.which(tool) is None:
            pytest.skip(f"Ray is kept to loopback by a network namespace, and {tool!r} is missing")
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "ip", "link", "set", "lo", "up"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(
            f"Ray would listen on all interfaces, and no network namespace may be made here: {probe.stderr.strip()}"
        )
    return ["unshare", "--user", "--map-root-user", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def test_a_sweep_on_ray_kept_to_loopback(tmp_path: Path) -> None:
    prefix = _isolated()
    reference = ds.single_process(str(tmp_path / "reference"))
    url = str(tmp_path / "store")
    cas.open(url).close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [*prefix, sys.executable, str(HERE / "ray_sweep.py"), url],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["listening"] and all(addr.rsplit(":", 1)[0] in LOOPBACK for addr in out["listening"]), out["listening"]
    for sweep in ("first", "second"):
        assert out[sweep]["results"] == reference and out[sweep]["values"] == reference
    assert set(out["second"]["statuses"]) == {"cached"} and len(out["second"]["statuses"]) == 10 * len(ds.SETTINGS)
    with cas.open(url) as store:
        ds.check_store(store, [cas.Ref(h) for h in out["second"]["finals"]])
