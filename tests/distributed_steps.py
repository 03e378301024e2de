"""A 5-step pipeline for the Dask and Ray tests: plain functions, made steps of one store by ``steps_of``.

Workers import this module (it is on their path), so the functions pickle by
reference; the steps pickle as (function, options, code hash) with the store
as its URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

import cas

#: The parameter settings a sweep fans out over.
SETTINGS = [{"n": n, "factor": f, "lr": lr} for n in (2_000, 3_000) for f in (1.0, 2.0) for lr in (0.1, 0.5)][:6]


def make_data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4))


def scale(data: np.ndarray, factor: float) -> np.ndarray:
    return data * factor


def split(data: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    cut = int(len(data) * ratio)
    return data[:cut], data[cut:]


def fit(train: np.ndarray, lr: float) -> np.ndarray:
    return train.mean(axis=0) * lr


def evaluate(weights: np.ndarray, test: np.ndarray) -> float:
    return float(np.abs(test @ weights).mean())


@dataclass
class Steps:
    make_data: cas.Step
    scale: cas.Step
    split: cas.Step
    fit: cas.Step
    evaluate: cas.Step


def steps_of(store: cas.Store) -> Steps:
    """The five functions as steps of ``store``."""
    return Steps(*(store.step(fn) for fn in (make_data, scale, split, fit, evaluate)))


def run_values(s: Steps, setting: dict[str, Any]) -> float:
    """One setting, values passed from step to step (in one process)."""
    data = s.scale(s.make_data(setting["n"], 7), setting["factor"])
    train, test = s.split(data, 0.8)
    return s.evaluate(s.fit(train, setting["lr"]), test)  # type: ignore[no-any-return]


def worker_pid() -> int:
    return os.getpid()


def sweep_refs(submit: Any, s: Steps, settings: list[dict[str, Any]] = SETTINGS) -> list[Any]:
    """Fan the pipeline out as one task per step call, Refs passed between tasks.

    ``submit(fn, *args)`` schedules a task (Dask: ``client.submit``; Ray: a remote
    call) and returns a handle the engine resolves in later tasks' arguments.
    """
    finals = []
    for st in settings:
        data = submit(s.make_data.ref, st["n"], 7)
        data = submit(s.scale.ref, data, st["factor"])
        parts = submit(s.split.ref, data, 0.8)
        weights = submit(_fit_first, s.fit, parts, st["lr"])
        finals.append(submit(_evaluate_second, s.evaluate, weights, parts))
    return finals


def _fit_first(fit: cas.Step, parts: tuple[cas.Ref, cas.Ref], lr: float) -> cas.Ref:
    return fit.ref(parts[0], lr)  # type: ignore[no-any-return]


def _evaluate_second(evaluate: cas.Step, weights: cas.Ref, parts: tuple[cas.Ref, cas.Ref]) -> cas.Ref:
    return evaluate.ref(weights, parts[1])  # type: ignore[no-any-return]


def single_process(url: str) -> list[float]:
    """The sweep in this process, in a store of its own: what every engine must reproduce."""
    with cas.open(url) as store:
        s = steps_of(store)
        return [run_values(s, st) for st in SETTINGS]


STEP_NAMES = {fn.__name__ for fn in (make_data, scale, split, fit, evaluate)}


def check_store(store: cas.Store, finals: list[cas.Ref]) -> None:
    """Lineage complete for every result (all five steps), and fsck clean."""
    for ref in finals:
        names = {n.label.split(" ")[0].rsplit(".", 1)[-1] for n in store.lineage(ref).runs()}
        assert names == STEP_NAMES, names
    report = store.fsck()
    assert report.ok, str(report)
