"""A 4-step pipeline for the run tests; each step body appends its name to $CAS_TEST_TRACE."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import cas


def _trace(name: str) -> None:
    path = os.environ.get("CAS_TEST_TRACE")
    if path:
        with open(path, "a") as f:
            f.write(name + "\n")


@cas.step
def make_data(n: int, seed: int) -> np.ndarray:
    _trace("make_data")
    return np.random.default_rng(seed).normal(size=(n, 3))


@cas.step(outputs=["train", "test"])
def split(data: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    _trace("split")
    cut = int(len(data) * ratio)
    return data[:cut], data[cut:]


def _center(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0)


@cas.step(depends_on=[_center])
def standardize(train: np.ndarray, scale: float) -> dict[str, Any]:
    _trace("standardize")
    return {"mean": train.mean(axis=0).tolist(), "scaled": _center(train) * scale}


@cas.step
def evaluate(model: dict[str, Any], test: np.ndarray) -> float:
    _trace("evaluate")
    return float(np.abs(test - np.array(model["mean"])).mean())


def run(n: int = 200, seed: int = 0, ratio: float = 0.8, scale: float = 1.0) -> float:
    with cas.pipeline("example"):
        data = make_data(n, seed)
        train, test = split(data, ratio)
        model = standardize(train, scale)
        return evaluate(model, test)


if __name__ == "__main__":
    print(run(**{k: float(v) if "." in v else int(v) for k, v in (a.split("=") for a in os.sys.argv[1:])}))
