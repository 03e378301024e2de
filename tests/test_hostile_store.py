"""Hostile stores (tests/hostile_stores.py): every reader path raises only typed errors, in bounded time and
memory, returns only the bytes asked for, and writes nothing outside the store or the requested target.

Each case builds a store with some hostile mutations, then acts as the victim: get, info, exists, log and
lineage of every name, ref and (a sample of) hashes, ``cas log/ls/show/lineage/get/du`` through the
CLI, every UI page, pull and clone into fresh stores (then the victim's own step and put there), gc and
fsck. The cases run in child processes (this file, run as a script) with an address-space limit, so a
memory bomb or a hang fails its case instead of the machine or the session.

One case per mutation kind, plus ``CAS_HOSTILE_SEEDS`` (default 4) random mixes of four kinds each, from
seed ``CAS_HOSTILE_SEED_BASE`` (default 1000) on. To look at a failing case: ``CAS_HOSTILE_KEEP=1 pytest
tests/test_hostile_store.py -k <case> --basetemp=/tmp/h`` keeps its stores; or build one by hand with
``hostile_stores.build(path, sandbox, seed, [kind])`` (the seed of a kind's case is ``seed_of(kind)``).
"""

from __future__ import annotations

import faulthandler
import html
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

import hostile_stores  # noqa: E402

OP_SECONDS = float(os.environ.get("CAS_HOSTILE_OP_SECONDS", "20"))  # one operation
OP_MEMORY = 512 << 20  # growth of the resident set during one operation
ADDRESS_SPACE_HEADROOM = 4 << 30  # the child's hard limit above what it maps after its imports
CASE_SECONDS = float(os.environ.get("CAS_HOSTILE_CASE_SECONDS", "120"))  # a whole case, before the child is killed
STUCK_SECONDS = 10  # an operation that ignores its time or memory signal this long ends the child
RANDOM_SEEDS = int(os.environ.get("CAS_HOSTILE_SEEDS", "4"))
SEED_BASE = int(os.environ.get("CAS_HOSTILE_SEED_BASE", "1000"))
MAX_HASHES = 12  # object hashes tried per store (the 600-run chain holds ~1,800 objects)
MAX_RUNS = 5  # runs whose lineage and pages are tried


def seed_of(kind: str) -> int:
    return zlib.crc32(kind.encode())


def cases() -> list[tuple[str, int, list[str] | None]]:
    found: list[tuple[str, int, list[str] | None]] = [
        (m.__name__, seed_of(m.__name__), [m.__name__]) for m in hostile_stores.MUTATIONS
    ]
    found += [(f"mix-{seed}", seed, None) for seed in range(SEED_BASE, SEED_BASE + RANDOM_SEEDS)]
    return found


CASES = cases()


# -- the parent: run the selected cases in child processes -----------------------------------------------


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    params = [getattr(item, "callspec", None) for item in request.session.items]
    wanted = {p.params["case"] for p in params if p is not None and "case" in p.params}
    todo = [c for c in CASES if c[0] in wanted]
    return run_cases(todo, tmp_path_factory.mktemp("hostile"))


def run_cases(todo: list[tuple[str, int, list[str] | None]], workdir: Path) -> dict[str, dict[str, Any]]:
    """Run cases in a child; when one kills its child (memory, hang), record it and go on with the rest."""
    results: dict[str, dict[str, Any]] = {}
    while todo:
        spec, out = workdir / "cases.json", workdir / "results.jsonl"
        spec.write_text(json.dumps([[*c[:2], c[2]] for c in todo]))
        out.write_text("")
        env = {**os.environ, "PYTHONPATH": f"{TESTS.parent}:{TESTS}"}
        with (workdir / "child.err").open("w") as err:
            proc = subprocess.Popen([sys.executable, __file__, str(spec), str(out), str(workdir)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
            died = None
            while proc.poll() is None:
                time.sleep(0.2)
                running = _running(out)
                if running is not None and time.time() - running[1] > CASE_SECONDS:
                    proc.send_signal(signal.SIGUSR2)  # faulthandler: every thread's stack, to child.err
                    time.sleep(1)
                    proc.kill()
                    proc.wait()
                    stack = _main_thread((workdir / "child.err").read_text())
                    died = f"child killed: the case ran for more than {CASE_SECONDS:.0f} s, stuck in:\n{stack}"
            if died is None and proc.returncode:
                died = f"child exited with {proc.returncode}: {(workdir / 'child.err').read_text()[-2000:]}"
        running = _running(out)
        for line in out.read_text().splitlines():
            entry = json.loads(line)
            if "id" in entry:
                results[entry["id"]] = entry
        if running is not None and running[0] not in results:
            failure = {"op": "child", "error": died}
            results[running[0]] = {"id": running[0], "planted": running[2], "failures": [failure]}
        rest = [c for c in todo if c[0] not in results]
        if died is None and rest:
            for c in rest:
                results[c[0]] = {"id": c[0], "planted": [], "failures": [{"op": "child", "error": "never ran"}]}
            rest = []
        todo = rest
    return results


def _running(out: Path) -> tuple[str, float, list[str]] | None:
    """The case the child is running (its id, start time and what was planted), if any."""
    running: tuple[str, float, list[str]] | None = None
    for line in out.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written
        if "started" in entry:
            running = (entry["started"], entry["at"], [])
        elif "built" in entry and running is not None:
            running = (running[0], running[1], entry["built"])
        else:
            running = None
    return running


def _main_thread(dump: str) -> str:
    """The main thread's stack in a faulthandler dump."""
    found = dump.rsplit("Current thread", 1)[-1].split("\n\n", 1)[0]
    return "\n".join(found.splitlines()[1:13])


@pytest.mark.slow  # every case builds a store and attacks it in a child process: minutes in all
@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_hostile_store(case: str, outcomes: dict[str, dict[str, Any]]) -> None:
    outcome = outcomes[case]
    if outcome["failures"]:
        lines = [f"planted: {p}" for p in outcome["planted"]]
        lines += [f"FAIL {f['op']}: {f['error']}" for f in outcome["failures"]]
        pytest.fail("\n".join(lines), pytrace=False)


def test_the_victim_checks_can_fail(tmp_path: Path) -> None:
    """An untyped error, a hang, a memory bomb and a stray write are each reported; a CasError is not."""
    import cas

    hostile = hostile_stores.Hostile(None, tmp_path / "store", tmp_path, None, None)  # type: ignore[arg-type]
    guard = Guard(seconds=0.5, memory=64 << 20)
    try:
        v = Victim(guard, hostile)
        v.op("typed", lambda: (_ for _ in ()).throw(cas.CorruptObjectError("bad")))
        v.op("untyped", int, "not a number")
        v.op("hang", time.sleep, 5)
        v.op("bomb", _hold_memory, 256 << 20)
    finally:
        guard.close()
    assert [f["op"] for f in v.failures] == ["untyped", "hang", "bomb"], v.failures
    before = snapshot(tmp_path, {"targets"})
    (tmp_path / "home").mkdir()
    (tmp_path / "targets" / "allowed").write_text("x")
    assert sorted(set(snapshot(tmp_path, {"targets"})) - set(before)) == ["home"]


def _hold_memory(size: int) -> int:
    held = [bytearray(1 << 20) for _ in range(size >> 20)]
    time.sleep(1)
    return len(held)


def test_the_generator_covers_every_kind_it_documents() -> None:
    for mutation in hostile_stores.MUTATIONS:
        assert mutation.__doc__ and mutation.__doc__.count("\n") == 0, mutation.__name__
    assert len(hostile_stores.BY_NAME) == len(hostile_stores.MUTATIONS)


# -- the child: act as the victim ----------------------------------------------------------------------


class OpTimeout(BaseException):
    pass


class OpMemory(BaseException):
    pass


class Violation(AssertionError):
    """A check of the victim's side failed (wrong value, page error, policy): its message says all."""


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


class Guard:
    """Bounds one operation: SIGALRM after ``seconds``, SIGUSR1 when the resident set grows by ``memory``.

    An operation that ignores the signals (stuck in C code) for STUCK_SECONDS more makes ``on_stuck`` run.
    """

    def __init__(self, seconds: float = OP_SECONDS, memory: int = OP_MEMORY,
                 on_stuck: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.seconds, self.memory, self.on_stuck = seconds, memory, on_stuck
        self.baseline = 0
        self.started = 0.0
        self.signalled: float | None = None
        self.label = ""
        self.armed = self.in_op = self.stopped = False
        self.previous = (signal.signal(signal.SIGALRM, self._timeout), signal.signal(signal.SIGUSR1, self._memory))
        threading.Thread(target=self._watch, daemon=True).start()

    def close(self) -> None:
        self.stopped = True
        signal.signal(signal.SIGALRM, self.previous[0])
        signal.signal(signal.SIGUSR1, self.previous[1])

    def _timeout(self, *_: object) -> None:
        if self.in_op:
            raise OpTimeout(f"took longer than {self.seconds:.0f} s")

    def _memory(self, *_: object) -> None:
        if self.in_op:
            raise OpMemory(f"resident memory grew by more than {self.memory >> 20} MiB")

    def _watch(self) -> None:
        while not self.stopped:
            time.sleep(0.02)
            if not self.in_op:
                continue
            now = time.monotonic()
            if self.armed and _rss() - self.baseline > self.memory:
                self.armed = False
                self.signalled = now
                os.kill(os.getpid(), signal.SIGUSR1)
            if self.on_stuck is not None:
                if self.signalled is not None and now - self.signalled > STUCK_SECONDS:
                    self.on_stuck(f"grew by more than {self.memory >> 20} MiB and ignored SIGUSR1")
                elif now - self.started > self.seconds + STUCK_SECONDS:
                    self.on_stuck(f"ran for more than {self.seconds:.0f} s and ignored SIGALRM")

    def __enter__(self) -> None:
        self.baseline = _rss()
        self.started = time.monotonic()
        self.signalled = None
        self.in_op = self.armed = True
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.in_op = self.armed = False


class Victim:
    """Runs operations on a hostile store and records every way one misbehaves."""

    def __init__(self, guard: Guard, hostile: hostile_stores.Hostile) -> None:
        self.guard = guard
        self.hostile = hostile
        self.failures: list[dict[str, str]] = []
        self.ops = 0
        self.slow: list[tuple[float, str]] = []
        self.profile: dict[str, float] = {}
        self.typed: dict[str, int] = {}  # the CasErrors seen, by class: shows how deep the mutations reached
        self.targets = hostile.sandbox / "targets"
        self.targets.mkdir()
        self._n = 0

    def target(self) -> Path:
        self._n += 1
        return self.targets / f"t{self._n}"

    def fail(self, op: str, error: str) -> None:
        self.failures.append({"op": op, "error": error})

    def op(self, label: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn``: a CasError is a fine answer; anything else, or too much time or memory, is a failure."""
        import cas

        self.ops += 1
        self.guard.label = label
        start = time.monotonic()
        try:
            try:
                with self.guard:
                    return fn(*args)
            finally:
                self._unblock_fifos()
                kind = " ".join(label.replace("pulled: ", "").replace("cloned: ", "").split()[:1])
                self.profile[kind] = round(self.profile.get(kind, 0) + time.monotonic() - start, 2)
                if time.monotonic() - start > 1:
                    self.slow.append((round(time.monotonic() - start, 1), label))
        except cas.CasError as exc:
            self.typed[type(exc).__name__] = self.typed.get(type(exc).__name__, 0) + 1
            return None
        except (OpTimeout, OpMemory) as exc:
            self.fail(label, f"{exc}\n{_tail(exc)}")
        except Violation as exc:
            self.fail(label, str(exc))
        except BaseException as exc:  # noqa: BLE001  (the point: anything untyped is a failure)
            self.fail(label, f"{type(exc).__module__}.{type(exc).__name__}: {exc!s:.300}\n{_tail(exc)}")
        return None

    def _unblock_fifos(self) -> None:
        for fifo in self.hostile.fifos:  # a reader blocked on a FIFO (maybe in a worker thread) gets EOF
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


def _tail(exc: BaseException, lines: int = 6) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip().splitlines()
    return "\n".join(line for line in text[-lines * 2 - 1 : -1] if line.strip())


def snapshot(root: Path, skip: set[str]) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root`` (but the top-level folders in ``skip``) with its kind, size, mode and times."""
    found = {}
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        if rel_folder == ".":
            dirs[:] = [d for d in dirs if d not in skip]
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            link = os.readlink(path) if os.path.islink(path) else None
            found[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, link)
    return found


def victim_side(guard: Guard, hostile: hostile_stores.Hostile) -> Victim:
    import numpy as np
    from click.testing import CliRunner

    import cas
    from cas.cli import main as cli
    from cas.refs import parse_ref_key

    sandbox, src = hostile.sandbox, str(hostile.root)
    v = _CURRENT["victim"] = Victim(guard, hostile)
    before = snapshot(sandbox, {"store", "pulled", "cloned", "targets"})
    f2py_before = "numpy.f2py" in sys.modules
    legit = hostile.legit
    expected = {legit.artifacts["blob"]: b"hello", legit.artifacts["cfg"]: {"a": 1, "b": [1.5, "x"]},
                legit.artifacts["arr"]: np.arange(hostile_stores.ARRAY_ROWS, dtype=np.float64)}  # fmt: skip

    def reads(store: cas.Store, prefix: str, hashes: list[str], *, full: bool = True) -> None:
        """get/info/exists of every name, ref and of ``hashes``; with ``full`` also lineage, views, log, runs."""
        names = v.op(f"{prefix}names", lambda: list(store.names())) or []
        refs = v.op(f"{prefix}refs", lambda: [f"{p[0]}@{p[2]}" for k in store.backend.list("refs/")
                                              if (p := parse_ref_key(k))]) or []  # fmt: skip
        for ref in [*names, *refs, *hashes]:
            v.op(f"{prefix}get {ref[:70]}", _get_checked, store, ref, expected)
            v.op(f"{prefix}info {ref[:70]}", store.info, ref)
            v.op(f"{prefix}exists {ref[:70]}", store.exists, ref)
        for ref in [*names, *hashes]:
            v.op(f"{prefix}get {ref[:70]} path=", _get_to, store, ref, v.target())
            v.op(f"{prefix}lineage up {ref[:70]}", _lineage, store, ref, "up")
            if full:
                v.op(f"{prefix}lineage down {ref[:70]}", _lineage, store, ref, "down")
                v.op(f"{prefix}visualizations {ref[:70]}", store.visualizations, ref)
        for name in names:
            v.op(f"{prefix}log {name[:70]}", _log, store, name)
        runs = v.op(f"{prefix}runs", lambda: [str(r) and r for r in store.runs()]) or []
        v.op(f"{prefix}log", lambda: [str(r) for r in store.log()])
        for run in runs[: MAX_RUNS if full else 1]:
            v.op(f"{prefix}lineage run {run.short}", _lineage, store, run, "both")

    store = v.op("open", lambda: cas.open(src, create=False, read_through=False))
    hashes: list[str] = []
    if store is not None:
        objects = v.op("list objects", lambda: sorted(k[8:10] + k[11:] for k in store.backend.list("objects/"))) or []
        hashes = hostile.rng.sample(objects, min(MAX_HASHES, len(objects)))
        hashes += [h.hex() for h in legit.artifacts.values()] + [h[:8] for h in hashes[:3]]
        reads(store, "", hashes)
        runs = [r.id for r in v.op("runs for UI", lambda: list(store.runs())) or []][:MAX_RUNS]
        names = v.op("names for UI", lambda: list(store.names())) or []
        named = {ref.hash for n in names if (ref := v.op(f"resolve {n[:70]}", store.resolve, n)) is not None}
        ui_pages(v, store, names, sorted(named | set(hashes)), runs)
        cli_commands(v, CliRunner(), cli, src, names)
        report = v.op("fsck", lambda: store.fsck(progress=False))
        if report is not None and report.ok and hostile.must_flag:
            v.fail("fsck", f"reported no problem in a store holding {hostile.must_flag}")

    pulled = sandbox / "pulled"
    victim = cas.open(pulled)  # an empty store of the victim's own
    v.op("pull", lambda: victim.pull(src, progress=False))
    reads(victim, "pulled: ", [h.hex() for h in legit.artifacts.values()], full=False)
    own_work(v, victim, "pulled: ")
    v.op("pulled: fsck", lambda: victim.fsck(progress=False))
    v.op("pulled: gc", lambda: victim.gc(grace=0, progress=False))
    v.op("pulled: close", victim.close)

    clone = v.op("clone", lambda: cas.clone(src, sandbox / "cloned"))
    if clone is not None:
        if clone.config.allow_pickle or clone.config.gc_grace < 0:
            v.fail("clone", f"the clone inherited the source's policy: {clone.config}")
        reads(clone, "cloned: ", [], full=False)
        own_work(v, clone, "cloned: ")
        v.op("cloned: gc", lambda: clone.gc(grace=0, progress=False))
        v.op("cloned: close", clone.close)

    if store is not None:
        v.op("own put", _own_put, v, store)
        v.op("gc", lambda: store.gc(grace=0, progress=False))
        v.op("close", store.close)

    after = snapshot(sandbox, {"store", "pulled", "cloned", "targets"})
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    # Every target given was targets/t<N>: anything else there was written beside the target, not in it.
    changed += sorted(f"targets/{p}" for p in os.listdir(v.targets) if not re.fullmatch(r"t[0-9]+", p))
    if changed:
        v.fail("writes", f"written outside the store and the targets: {changed[:10]}")
    if not f2py_before and "numpy.f2py" in sys.modules:
        v.fail("imports", "numpy.f2py was imported because stored data named it")
    return v


def _get_checked(store: Any, ref: str, expected: dict[bytes, Any]) -> Any:
    """get ``ref``; a legitimate artifact's hash must give its own value."""
    import cas

    try:
        value = store.get(ref)
    except cas.PathRequiredError:
        return None
    wanted = expected.get(bytes.fromhex(ref)) if len(ref) == 64 and _is_hex(ref) else None
    if wanted is not None and (type(value) is not type(wanted) or not _equal(value, wanted)):
        raise Violation(f"get({ref[:12]}) returned {value!r:.60}, not the artifact's value {wanted!r:.60}")
    return value


def _get_to(store: Any, ref: str, target: Path) -> Any:
    return store.get(ref, path=target)


def _lineage(store: Any, ref: Any, direction: str) -> str:
    if direction == "both":
        return str(store.lineage(ref, "up")) + str(store.lineage(ref, "down"))
    return str(store.lineage(ref, direction))


def _log(store: Any, name: str) -> list[str]:
    return [str(e) for e in store.log(name)]


def _equal(a: Any, b: Any) -> bool:
    import numpy as np

    return bool(np.array_equal(a, b)) if isinstance(b, np.ndarray) else bool(a == b)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def own_work(v: Victim, store: Any, prefix: str) -> None:
    """The victim's own step and put in a store that took in hostile content: never poisoned."""
    import cas

    def step() -> None:
        double = cas.step(hostile_stores.double, store=store)
        for x in (21, 22):
            if (result := double(x)) != 2 * x:
                raise Violation(f"the victim's double({x}) returned {result!r} from a planted cache entry")

    def tags() -> None:
        for name in store.names():
            for tag, record in store.refs.tags(name).items():
                if record.number is not None and store.resolve(f"{name}@{record.number}").hash != record.target.hex():
                    raise Violation(f"{name}@{tag} claims version {record.number} but names another artifact")

    v.op(f"{prefix}own step", step)
    v.op(f"{prefix}own put", _own_put, v, store)
    v.op(f"{prefix}tags agree", tags)


def _own_put(v: Victim, store: Any) -> None:
    """The victim's put of bytes a writer knew in advance: what it gets back is what it put."""
    payload = hostile_stores.victim_payload(sum(n for _, n in v.hostile.legit.chunks))
    ref = store.put(payload)
    if store.get(ref) != payload:
        raise Violation("get(put(payload)) != payload: a planted chunk map was used")


def ui_pages(v: Victim, store: Any, names: list[str], hashes: list[str], runs: list[str]) -> None:
    from flask import got_request_exception

    from cas.ui.app import create_app

    app = create_app(store)
    errors: list[BaseException] = []
    got_request_exception.connect(lambda sender, exception, **_: errors.append(exception), app, weak=False)
    client = app.test_client()
    pages = ["/", "/artifacts", "/artifacts?page=1", "/runs", "/runs?step=double", "/store?fsck=1"]
    pages += [f"/names/{n}" for n in names] + [f"/runs?name={n}" for n in names[:10]]
    for h in hashes:
        if len(h) == 64:
            pages += [f"/artifact/{h}", f"/artifact/{h}/view/0", f"/artifact/{h}/download", f"/lineage/artifact/{h}"]
    pages += [p for r in runs for p in (f"/run/{r}", f"/lineage/run/{r}?direction=down")]

    def get(page: str) -> None:
        del errors[:]
        response = client.get(page)
        if response.status_code >= 500:
            if errors:
                why = f"{type(errors[0]).__module__}.{type(errors[0]).__name__}: {errors[0]!s:.300}\n{_tail(errors[0])}"
            else:
                shown = re.search(r'<p class="error">(.*?)</p>', response.get_data(as_text=True), re.S)
                why = f"a CasError shown as a server error: {html.unescape(shown.group(1)) if shown else '?'}"
            raise Violation(f"answered {response.status_code}: {why}")

    for page in pages:
        v.op(f"ui {page[:90]}", get, page)


def cli_commands(v: Victim, runner: Any, cli: Any, src: str, names: list[str]) -> None:
    def invoke(*args: Any) -> None:
        cwd = args[-1] if isinstance(args[-1], Path) else None
        args = args[:-1] if cwd is not None else args
        here = os.getcwd()
        if cwd is not None:
            cwd.mkdir(parents=True, exist_ok=True)
            os.chdir(cwd)
        try:
            result = runner.invoke(cli, ["--store", src, *args], catch_exceptions=True)
        finally:
            os.chdir(here)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            exc = result.exception
            raise Violation(f"cas {' '.join(args)}: {type(exc).__name__}: {exc!s:.300}\n{_tail(exc)}")

    for args in (["log"], ["log", "--json"], ["log", "--oneline"], ["ls"], ["ls", "--json"], ["du", "--json"]):
        v.op(f"cli {' '.join(args)}", invoke, *args)
    for name in names:
        for args in (["show", name], ["show", name, "--json"], ["log", name], ["lineage", name],
                     ["lineage", name, "--down"], ["lineage", name, "--format", "json"],
                     ["get", name, "-o", str(v.target())]):  # fmt: skip
            v.op(f"cli {' '.join(args)[:90]}", invoke, *args)
        v.op(f"cli get {name[:70]} (no -o)", invoke, "get", name, v.target())


def run_one(guard: Guard, case_id: str, seed: int, kinds: list[str] | None, workdir: Path) -> dict[str, Any]:
    sandbox = (workdir / case_id).resolve()
    for folder in ("home", "cwd", "tmp"):
        (sandbox / folder).mkdir(parents=True)
    (sandbox / "home" / ".bashrc").write_text("# the victim's own\n")
    (sandbox / "home" / "secret.txt").write_text("secret\n")
    os.environ.update(HOME=str(sandbox / "home"), TMPDIR=str(sandbox / "tmp"), XDG_CONFIG_HOME=str(sandbox / "home"))
    os.environ.pop("CAS_STORE", None)
    os.chdir(sandbox / "cwd")
    started = time.monotonic()
    hostile = hostile_stores.build(sandbox / "store", sandbox, seed, kinds)
    _CURRENT["planted"] = hostile.planted
    _CURRENT["report"]({"built": hostile.planted})
    victim = victim_side(guard, hostile)
    return {
        "id": case_id,
        "planted": hostile.planted,
        "failures": victim.failures,
        "ops": victim.ops,
        "slow": sorted(victim.slow)[-5:],
        "profile": victim.profile,
        "typed": victim.typed,
        "seconds": round(time.monotonic() - started, 2),
    }


def child(spec: Path, out: Path, workdir: Path) -> None:
    import cas  # noqa: F401  (imports first: the address-space limit is set above what they map)
    import cas.cli
    import cas.ui.app  # noqa: F401
    import materializers.arrow  # noqa: F401

    faulthandler.register(signal.SIGUSR2, all_threads=True)
    soft = _vm_size() + ADDRESS_SPACE_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (soft, resource.RLIM_INFINITY))
    with out.open("a") as results:

        def stuck(why: str) -> None:  # in the watcher thread, while the main thread is stuck in an operation
            victim = _CURRENT.get("victim")
            failures = [*(victim.failures if victim else []), {"op": guard.label, "error": f"never returned: it {why}"}]
            outcome = {"id": _CURRENT["id"], "planted": _CURRENT.get("planted", []), "failures": failures}
            results.write(json.dumps(outcome, default=str) + "\n")
            results.flush()
            os._exit(3)

        def report(entry: dict[str, Any]) -> None:
            results.write(json.dumps(entry, default=str) + "\n")
            results.flush()

        guard = Guard(on_stuck=stuck)
        for case_id, seed, kinds in json.loads(spec.read_text()):
            _CURRENT.clear()
            _CURRENT.update(id=case_id, report=report)
            results.write(json.dumps({"started": case_id, "at": time.time()}) + "\n")
            results.flush()
            try:
                outcome = run_one(guard, case_id, seed, kinds, workdir)
            except BaseException as exc:  # noqa: BLE001  (building the store failed: report, go on)
                outcome = {"id": case_id, "planted": [], "failures": [{"op": "build", "error": _tail(exc, 20)}]}
            outcome["at"] = time.time()
            if not os.environ.get("CAS_HOSTILE_KEEP"):
                shutil.rmtree(workdir / case_id, ignore_errors=True)
            results.write(json.dumps(outcome, default=str) + "\n")
            results.flush()
    os._exit(0)  # threads blocked on hostile files must not hold the exit


_CURRENT: dict[str, Any] = {}  # the child's case in progress, for a report from the watcher thread


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


if __name__ == "__main__":
    child(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
