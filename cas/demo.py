"""``cas demo``: a small ML pipeline, run three times, to show what the store is for.

Make a data set, split it, standardize the features, train a numpy logistic
regression and evaluate it. The first run executes every step; the second
finds every step in the cache; the third changes the learning rate, so only
training and evaluation run again. Each run names its model and metrics: a
name gets a new version only when the content differs from its latest
version, so the cached run makes none. Then the log and the model's lineage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cas.steps import Step
from cas.store import Ref, Store

Say = Callable[[str], None]
NAMED = ("demo/model", "demo/metrics")


def build(store: Store) -> dict[str, Step]:
    """The pipeline's steps, bound to ``store``."""

    @store.step(name="demo.make_dataset", outputs=["features", "labels"])
    def make_dataset(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 2, n)
        centers = np.array([[-1.0, 0.5, 2.0, 0.0], [1.0, -0.5, 3.0, 1.0]])
        features = centers[labels] + rng.normal(scale=[1.0, 1.0, 5.0, 2.0], size=(n, 4))
        return features, labels

    @store.step(name="demo.split", outputs=["train_x", "train_y", "test_x", "test_y"])
    def split(features: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int) -> tuple[Any, ...]:
        order = np.random.default_rng(seed).permutation(len(labels))
        cut = int(len(labels) * (1 - test_fraction))
        train, test = order[:cut], order[cut:]
        return features[train], labels[train], features[test], labels[test]

    @store.step(name="demo.standardize", outputs=["train_x", "test_x", "scaler"])
    def standardize(train_x: np.ndarray, test_x: np.ndarray) -> tuple[Any, ...]:
        mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-12
        return (train_x - mean) / std, (test_x - mean) / std, {"mean": mean.tolist(), "std": std.tolist()}

    @store.step(name="demo.train", outputs=["model"])
    def train(x: np.ndarray, y: np.ndarray, learning_rate: float, epochs: int) -> dict[str, Any]:
        weights, bias = np.zeros(x.shape[1]), 0.0
        for _ in range(epochs):
            p = 1 / (1 + np.exp(-(x @ weights + bias)))
            weights -= learning_rate * x.T @ (p - y) / len(y)
            bias -= learning_rate * float(np.mean(p - y))
        return {"weights": weights, "bias": bias}

    @store.step(name="demo.evaluate", outputs=["metrics"])
    def evaluate(model: dict[str, Any], x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        p = 1 / (1 + np.exp(-(x @ model["weights"] + model["bias"])))
        eps = 1e-12
        loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        return {"accuracy": float(np.mean((p > 0.5) == y)), "log_loss": loss}

    return {
        "make_dataset": make_dataset,
        "split": split,
        "standardize": standardize,
        "train": train,
        "evaluate": evaluate,
    }


def pipeline(
    store: Store, steps: dict[str, Step], *, learning_rate: float
) -> tuple[dict[str, float], list[Any], list[Ref]]:
    """One execution; returns the metrics, the runs it recorded and the versions it named."""
    runs = []
    with store.pipeline("demo"):
        (features, labels), run = steps["make_dataset"].call(n=20_000, seed=7)
        runs.append(run)
        (train_x, train_y, test_x, test_y), run = steps["split"].call(features, labels, test_fraction=0.25, seed=7)
        runs.append(run)
        (train_x, test_x, _), run = steps["standardize"].call(train_x, test_x)
        runs.append(run)
        model, run = steps["train"].call(train_x, train_y, learning_rate=learning_rate, epochs=300)
        runs.append(run)
        metrics, run = steps["evaluate"].call(model, test_x, test_y)
        runs.append(run)
    # Naming the outputs: the same content, so the same artifacts the runs produced;
    # a name whose latest version already holds it gets no new version.
    named = [store.put(value, name) for value, name in zip((model, metrics), NAMED, strict=True)]
    return metrics, runs, named


def run(store: Store, say: Say = print) -> None:
    """Run the demo on ``store`` and narrate it through ``say``."""
    steps = build(store)
    say(f"cas demo: a logistic regression pipeline on {store.url}\n")
    for title, rate in (
        ("1. first run: every step executes", 0.5),
        ("2. same code, same parameters, same data: every step is a cache hit", 0.5),
        ("3. learning_rate 0.5 -> 0.1: only train and evaluate run again", 0.1),
    ):
        before = {(r.name, r.number) for r in (store.resolve(n) for n in NAMED if store.exists(n))}
        start = time.perf_counter()
        metrics, runs, named = pipeline(store, steps, learning_rate=rate)
        took = time.perf_counter() - start
        if title.startswith("1.") and all(r.status == "cached" for r in runs):
            title = "1. first run: this store has seen the demo before, so even this run is all cache hits"
        say(title)
        for r in runs:
            state = "cache hit" if r.status == "cached" else "executed"
            say(f"   {r.step.removeprefix('demo.'):12} {state:9} {r.duration * 1000:7.1f} ms  {r.short}")
        say(f"   accuracy {metrics['accuracy']:.3f}, log loss {metrics['log_loss']:.3f} ({took:.2f} s)")
        kept = [str(ref) for ref in named if (ref.name, ref.number) in before]
        made = [str(ref) for ref in named if (ref.name, ref.number) not in before]
        if made:
            say(f"   new versions: {', '.join(made)}")
        if kept:
            say(f"   the latest versions already held these: {', '.join(kept)} (no new version)")
        say("")
    say("log (newest first):")
    for r in store.log(limit=8):
        say(f"   {r}")
    say("\nversions of demo/model:")
    for v in store.history("demo/model", limit=3):
        say(f"   {v}")
    say("\nwhere demo/model came from (cas lineage demo/model):")
    say(store.lineage("demo/model").to_text())
