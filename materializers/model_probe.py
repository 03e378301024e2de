"""Parse a stored xgboost or lightgbm model in a child process first: their C++ parsers crash on crafted input.

Measured (xgboost 3.2, lightgbm 4.7): a few random byte edits to a valid UBJSON
model or model string make ``load_model`` / ``Booster(model_str=)`` segfault,
abort, or allocate until the kernel kills the process, where no Python
exception can be caught. So a stored model is loaded, dumped (which walks every
tree) and run on a few rows in a throwaway interpreter, under a memory limit
and a timeout, before this process touches it; a child that dies means the
bytes are refused (CorruptObjectError). Costs one interpreter start per load
(about a second). A probe cannot prove that every input row is safe, only that
the model parses, dumps and predicts: the bytes are hash-verified, so this only
matters for a store written by someone else.
"""

from __future__ import annotations

import os
import subprocess
import sys

from cas.errors import CorruptObjectError

#: Set to False to skip the child process (only for stores whose writers you trust).
enabled = True
TIMEOUT = 120.0
_MEMORY = 8 * 1024**3
# -P: the child's sys.path does not start with the current directory (a stray xgboost.py there is not run).
_SAFE_PATH = ("-P",) if sys.version_info >= (3, 11) else ()

_SCRIPT = r"""
import resource, sys
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
data = sys.stdin.buffer.read()
import numpy as np
def rows(n):
    found = np.random.default_rng(0).normal(size=(16, min(max(n, 1), 100_000))) * 10
    found[0] = 0
    found[1] = np.nan
    return found
if sys.argv[1] == "xgboost":
    import xgboost as xgb
    bst = xgb.Booster()
    bst.load_model(bytearray(data))
    bst.get_dump()
    bst.predict(xgb.DMatrix(rows(bst.num_features())))
else:
    import lightgbm as lgb
    bst = lgb.Booster(model_str=data.decode("utf-8"))
    bst.dump_model()
    bst.predict(rows(bst.num_feature()))
"""


def check(library: str, data: bytes) -> None:
    """Refuse (CorruptObjectError) model bytes that fail or crash ``library`` in a child process."""
    if not enabled:
        return
    limit = max(_MEMORY, 64 * len(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, *_SAFE_PATH, "-c", _SCRIPT, library, str(limit)],
            input=data, capture_output=True, timeout=TIMEOUT, env=env, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise CorruptObjectError(
            f"the stored {library} model did not load within {TIMEOUT:.0f} s in a probe process"
        ) from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        how = f"died with signal {-done.returncode}" if done.returncode < 0 else f"failed ({tail[0][:300]})"
        raise CorruptObjectError(f"the stored {library} model does not load: a probe process loading it {how}")
