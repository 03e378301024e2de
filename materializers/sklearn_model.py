"""scikit-learn estimators and pipelines, in skops' secure format (no pickle).

skops writes an object as a zip of ``schema.json`` (the object tree: class
names, attributes, plain values) and one ``.npy``/``.npz``/``.bin`` member per
array or byte string. cas stores those members as the artifact's files, named
canonically (skops names them by ``id()`` and uuids, which would give the same
model a new hash on every put), so unchanged arrays dedup, and rebuilds the zip
in memory (stored, never compressed: no decompression bomb) to load it.

Trust: skops builds only the types it is told to trust, checked before anything
is constructed. cas passes exactly :data:`TRUSTED_TYPES` (plus skops' own
defaults: scikit-learn's public estimators from ``all_estimators``, its
audited loss/link/binning internals, numpy and scipy ufuncs and dtypes,
numpy bit generators, Python primitives and containers), never the list a
stored file carries. A model holding any other type (a custom transformer, a
lambda, a KDTree, a HistGradientBoosting predictor) is refused at put with
UnsupportedTypeError naming the types, so ``allow_pickle=True`` can store it as
a pickle; a stored file naming one raises UntrustedTypesError and is never built.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import numpy as np
import sklearn
import skops.io as sio
from numpy.lib import format as npy_format
from sklearn.base import BaseEstimator
from sklearn.tree import BaseDecisionTree
from sklearn.tree._tree import Tree

from cas.errors import CasError, CorruptObjectError, DeclaredSizeError, UnsupportedTypeError, UntrustedTypesError
from materializers import visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer, type_name_of
from materializers.model_params import params_table
from materializers.visuals import Visualization

#: Types cas trusts beyond skops' defaults. skops leaves ``sklearn.tree._tree.Tree``
#: out because its node arrays hold raw child and feature indices that scikit-learn
#: follows without bounds checks (a crafted file loads, then crashes ``predict``);
#: cas trusts it because it checks every loaded tree itself (:func:`_check_tree`:
#: children after their parent and inside the node count, one parent per node,
#: features inside the estimator's ``n_features_in_``, the recorded depth) before
#: the model is returned. HistGradientBoosting's ``TreePredictor`` has the same flaw
#: and no such check here: it is not trusted (pickle, with consent).
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)

_SCHEMA = "schema.json"
_MEMBER = re.compile(r"([0-9]{1,9})\.(npy|npz|bin)")
_MAX_SCHEMA = 256 * 1024 * 1024
_NPZ_RATIO = 256  # scipy's save_npz deflates: declared sizes at most this many times the stored bytes (+1 MiB)


def _check_npy(data: bytes, what: str) -> None:
    """An .npy member must hold exactly the bytes its header declares, and no Python objects (checked before numpy allocates)."""
    stream = io.BytesIO(data)
    try:
        major, _ = npy_format.read_magic(stream)
        header = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
        shape, _, dtype = header(stream)
    except Exception as exc:  # numpy tokenizes the header: ValueError, SyntaxError, tokenize.TokenError, ...
        raise CorruptObjectError(f"stored array {what} has no valid .npy header: {exc}") from None
    if dtype.hasobject:
        raise CorruptObjectError(f"stored array {what} holds Python objects")
    declared = dtype.itemsize * int(np.prod(shape, dtype=object))
    if declared != len(data) - stream.tell():
        raise DeclaredSizeError(f"stored array {what} declares {declared} bytes and holds {len(data) - stream.tell()}")


def _check_member(path: str, data: bytes) -> None:
    if path.endswith(".npy"):
        _check_npy(data, path)
    elif path.endswith(".npz"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                infos = zf.infolist()
                if sum(i.file_size for i in infos) > _NPZ_RATIO * len(data) + 1024 * 1024:
                    raise DeclaredSizeError(f"stored {path} declares more than {_NPZ_RATIO} times its size")
                for i in infos:
                    _check_npy(zf.read(i), f"{path}/{i.filename}")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
            if isinstance(exc, CasError):
                raise
            raise CorruptObjectError(f"stored {path} is not a valid .npz: {exc}") from None


def _untrusted(data: bytes) -> list[str]:
    return sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))


def _canonical(data: bytes) -> tuple[bytes, dict[str, bytes]]:
    """skops' zip as (schema, members) with ids and member names numbered in order of appearance."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        schema = json.loads(zf.read(_SCHEMA))
        members = {name: zf.read(name) for name in zf.namelist() if name != _SCHEMA}
    ids: dict[int, int] = {}
    names: dict[str, str] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for k, v in node.items():
            if k == "__id__" and type(v) is int:
                v = ids.setdefault(v, len(ids))
            elif k == "file" and isinstance(v, str) and v in members:
                v = names.setdefault(v, f"{len(names)}.{v.rpartition('.')[2]}")
            else:
                v = walk(v)
            out[k] = v
        return out

    canonical = walk(schema)
    if set(names) != set(members):
        raise UnsupportedTypeError("skops wrote members its schema does not name: cas can not store it canonically")
    text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode()
    return text, {names[n]: _zero_padding(members[n]) if n.endswith(".npy") else members[n] for n in members}


def _zero_padding(member: bytes) -> bytes:
    """A structured array with its padding bytes zeroed.

    scikit-learn's tree nodes are a C struct with 7 bytes of padding that
    hold whatever was in memory: stored as is, the same model would get
    another hash on every training (and leak a little of the process's memory).
    """
    arr = np.load(io.BytesIO(member), allow_pickle=False)
    if arr.dtype.names is None:
        return member
    clean = np.zeros(arr.shape, dtype=arr.dtype)  # calloc: zeros_like assigns 0 field by field, padding untouched
    for field in arr.dtype.names:
        clean[field] = arr[field]
    out = io.BytesIO()
    np.save(out, clean, allow_pickle=False)
    return out.getvalue()


def _check_tree(tree: Tree, n_features: Any) -> None:
    """Refuse a tree that would make scikit-learn read out of bounds or loop (see TRUSTED_TYPES)."""
    n = int(tree.node_count)
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    if type(n_features) is not int or int(tree.n_features) != n_features or n < 1:
        raise CorruptObjectError("a stored decision tree disagrees with its estimator's n_features_in_")
    if not (len(left) == len(right) == len(feature) == n):
        raise CorruptObjectError("a stored decision tree's node arrays disagree in length")
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        raise CorruptObjectError("a stored decision tree has a node with one child")
    index = np.arange(n)
    inner = ~leaf
    if not (
        np.all((left[inner] > index[inner]) & (left[inner] < n))
        and np.all((right[inner] > index[inner]) & (right[inner] < n))
        and np.all((feature[inner] >= 0) & (feature[inner] < n_features))
    ):
        raise CorruptObjectError("a stored decision tree has a child or feature index out of range")
    parents = np.bincount(np.concatenate([left[inner], right[inner]]), minlength=n)
    if parents[0] != 0 or not np.all(parents[1:] == 1):
        raise CorruptObjectError("a stored decision tree's nodes do not form a tree")
    depth, level = 0, np.array([0])
    while True:  # children come after their parent and each has one: this ends within n levels
        level = level[inner[level]]
        if not level.size:
            break
        level = np.concatenate([left[level], right[level]])
        depth += 1
    if depth != int(tree.max_depth):
        raise CorruptObjectError("a stored decision tree's max_depth disagrees with its nodes")


def _check_trees(root: Any) -> None:
    """Every Tree in the loaded object must be the ``tree_`` of a decision tree it fits."""
    seen: set[int] = set()
    checked: set[int] = set()
    trees: list[Tree] = []
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, BaseDecisionTree) and isinstance(getattr(obj, "tree_", None), Tree):
            _check_tree(obj.tree_, getattr(obj, "n_features_in_", None))
            checked.add(id(obj.tree_))
        if isinstance(obj, Tree):
            trees.append(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                stack.extend(obj.ravel().tolist())
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.extend(vars(obj).values())
    if any(id(t) not in checked for t in trees):
        raise CorruptObjectError("a stored decision tree is not the tree_ of a decision tree estimator")


def _plain_params(est: Any) -> dict[str, Any]:
    try:
        return dict(est.get_params(deep=False))
    except Exception:  # an estimator whose get_params fails still gets a summary
        return {}


class SklearnMaterializer(Materializer):
    """scikit-learn estimators (and pipelines of them) through skops."""

    name = "cas.sklearn"
    version = "1"
    packages = ("scikit-learn", "skops")
    types = (BaseEstimator,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        try:
            data = sio.dumps(obj)
        except (TypeError, ValueError, AttributeError, NotImplementedError) as exc:
            raise UnsupportedTypeError(
                f"skops can not write {type_name_of(type(obj))} ({type(exc).__name__}: {str(exc)[:300]}); "
                "store it with allow_pickle=True if you trust whoever will load it"
            ) from exc
        untrusted = _untrusted(data)
        if untrusted:
            raise UnsupportedTypeError(
                f"{type_name_of(type(obj))} holds types cas does not trust to load from a store: "
                f"{', '.join(untrusted)}; store it with allow_pickle=True (loading then needs trust_pickle=True)"
            )
        schema, members = _canonical(data)
        writer.write_bytes(_SCHEMA, schema)
        for name in sorted(members):
            writer.write_bytes(name, members[name])

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        paths = reader.paths()
        if _SCHEMA not in paths or not all(p == _SCHEMA or _MEMBER.fullmatch(p) for p in paths):
            raise CorruptObjectError(f"stored files are not a cas.sklearn model: {paths[:10]}")
        if reader.size(_SCHEMA) > _MAX_SCHEMA:
            raise CorruptObjectError(f"stored schema.json is over {_MAX_SCHEMA} bytes")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
            for path in paths:  # stored, not compressed: the zip is exactly as large as the files
                member = reader.read_bytes(path)
                _check_member(path, member)
                zf.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), member)
        data = buffer.getvalue()
        try:
            untrusted = _untrusted(data)
        except (ImportError, CasError):
            raise
        except Exception as exc:  # skops' parser on bytes it did not write: KeyError, JSON errors, ...
            raise CorruptObjectError(
                f"stored skops schema is malformed ({type(exc).__name__}: {str(exc)[:300]})"
            ) from None
        if untrusted:
            raise UntrustedTypesError(
                f"the stored model names types cas does not trust: {', '.join(untrusted[:20])}; building them "
                "could run code chosen by the store, so it is never loaded (cas stores such models as pickles, "
                "so these files were not written by this cas.sklearn)",
                materializer=self.name, materializer_version=self.version,
            )  # fmt: skip
        try:
            obj = sio.loads(data, trusted=list(TRUSTED_TYPES))
        except sio.exceptions.UntrustedTypesFoundException as exc:  # what the audit above missed: still refused
            raise UntrustedTypesError(
                str(exc)[:500], materializer=self.name, materializer_version=self.version
            ) from None
        except (ImportError, CasError):
            raise  # a module or class this process lacks (another scikit-learn): LoadError in load_checked
        except Exception as exc:  # only trusted types are built: any failure is the stored bytes' doing
            raise CorruptObjectError(f"stored model does not build ({type(exc).__name__}: {str(exc)[:300]})") from None
        if not isinstance(obj, type_) or not isinstance(obj, BaseEstimator):
            raise CorruptObjectError(f"the stored model is a {type_name_of(type(obj))}, recorded as {type_.__name__}")
        _check_trees(obj)
        return obj

    def resolve_type(self, type_name: str, metadata: dict[str, Any]) -> type:
        found = super().resolve_type(type_name, metadata)
        return found if type_name_of(found) == type_name else BaseEstimator

    def metadata(self, obj: Any) -> dict[str, Any]:
        facts: dict[str, Any] = {"class": type_name_of(type(obj)), "sklearn": sklearn.__version__}
        n = getattr(obj, "n_features_in_", None)
        if isinstance(n, int):
            facts["n_features"] = n
        estimators = getattr(obj, "estimators_", None)
        if isinstance(estimators, (list, np.ndarray)):
            facts["n_estimators"] = int(np.size(estimators))
        steps = getattr(obj, "steps", None)
        if isinstance(steps, list):
            facts["steps"] = [str(s[0]) for s in steps if isinstance(s, tuple) and s]
        return facts

    def visualize(self, obj: Any) -> list[Visualization]:
        facts: list[tuple[str, Any]] = [("class", type_name_of(type(obj)))]
        facts += [(k, v) for k, v in self.metadata(obj).items() if k != "class"]
        return [visuals.summary(facts), params_table(_plain_params(obj))]
