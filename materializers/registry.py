"""Finding the materializer for an object: exact type, then the MRO, then fallbacks.

Materializers of optional libraries (numpy, pandas, pyarrow, pydantic) are
known by the dotted names of the types they handle and imported only when an
object of such a type shows up, or an artifact names them: importing cas
never imports those libraries.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from typing import Any, TypeVar

from cas.errors import InvalidArgumentError, LoadError, UnsupportedTypeError
from materializers.base import Materializer, installed_versions, read_writer_record, type_name_of, versions_text

M = TypeVar("M", bound=type[Materializer])

# (top-level package, class name) -> module that registers its materializer;
# libraries move their classes between submodules, so the package is enough.
_LAZY_TYPES = {
    ("numpy", "ndarray"): "materializers.numpy_array",
    ("numpy", "generic"): "materializers.numpy_array",
    ("numpy", "MaskedArray"): "materializers.numpy_masked",
    ("pandas", "DataFrame"): "materializers.arrow",
    ("pandas", "Series"): "materializers.arrow",
    ("pyarrow", "Table"): "materializers.arrow",
    ("pydantic", "BaseModel"): "materializers.pydantic_model",
    # an XGBClassifier is also a sklearn BaseEstimator: XGBModel/LGBMModel come first in its MRO
    ("sklearn", "BaseEstimator"): "materializers.sklearn_model",
    ("xgboost", "Booster"): "materializers.xgboost_model",
    ("xgboost", "XGBModel"): "materializers.xgboost_model",
    ("lightgbm", "Booster"): "materializers.lightgbm_model",
    ("lightgbm", "LGBMModel"): "materializers.lightgbm_model",
    ("torch", "Tensor"): "materializers.torch_tensors",
    ("torch", "Module"): "materializers.torch_module",
    ("polars", "DataFrame"): "materializers.polars_frame",
    ("polars", "Series"): "materializers.polars_frame",
    ("polars", "LazyFrame"): "materializers.polars_frame",
    ("scipy", "spmatrix"): "materializers.sparse",
    ("scipy", "sparray"): "materializers.sparse",
    ("scipy", "dok_matrix"): "materializers.sparse",  # a dict subclass: dict comes first in its MRO
    ("scipy", "dok_array"): "materializers.sparse",
    ("PIL", "Image"): "materializers.images",
    ("xarray", "DataArray"): "materializers.xarray_data",
    ("xarray", "Dataset"): "materializers.xarray_data",
    ("matplotlib", "Figure"): "materializers.figures",
    ("datasets", "Dataset"): "materializers.hf_datasets",
    ("datasets", "DatasetDict"): "materializers.hf_datasets",
}
# materializer name -> (module, what to install when it is missing)
_LAZY_NAMES = {
    "cas.numpy": ("materializers.numpy_array", "numpy"),
    "cas.numpy.masked": ("materializers.numpy_masked", "numpy"),
    "cas.pandas": ("materializers.arrow", "cas-store[pandas]"),
    "cas.arrow": ("materializers.arrow", "cas-store[pandas]"),
    "cas.pydantic": ("materializers.pydantic_model", "pydantic"),
    "cas.sklearn": ("materializers.sklearn_model", "cas-store[sklearn]"),
    "cas.xgboost.booster": ("materializers.xgboost_model", "cas-store[xgboost]"),
    "cas.xgboost.sklearn": ("materializers.xgboost_model", "cas-store[xgboost]"),
    "cas.lightgbm.booster": ("materializers.lightgbm_model", "cas-store[lightgbm]"),
    "cas.lightgbm.sklearn": ("materializers.lightgbm_model", "cas-store[lightgbm]"),
    "cas.torch": ("materializers.torch_tensors", "cas-store[torch]"),
    "cas.torch.module": ("materializers.torch_module", "cas-store[torch]"),
    "cas.dataclass": ("materializers.structured", ""),
    "cas.pickle": ("materializers.pickled", ""),
    "cas.polars": ("materializers.polars_frame", "cas-store[polars]"),
    "cas.polars.lazy": ("materializers.polars_frame", "cas-store[polars]"),
    "cas.scipy.sparse": ("materializers.sparse", "cas-store[scipy]"),
    "cas.pil": ("materializers.images", "cas-store[images]"),
    "cas.xarray": ("materializers.xarray_data", "cas-store[xarray]"),
    "cas.matplotlib.figure": ("materializers.figures", "cas-store[matplotlib]"),
    "cas.datasets": ("materializers.hf_datasets", "cas-store[datasets]"),
}


class Registry:
    """Materializers by type and by name."""

    def __init__(self) -> None:
        self._by_type: dict[type, Materializer] = {}
        self._by_name: dict[str, Materializer] = {}
        self._lock = threading.Lock()

    def register(self, cls: M) -> M:
        """Register a materializer class (usable as a decorator); later registrations win."""
        if not cls.name:
            raise InvalidArgumentError(f"{cls.__name__} must set a name")
        instance = cls()
        with self._lock:
            self._by_name[cls.name] = instance
            for t in cls.types:
                self._by_type[t] = instance
        return cls

    def for_object(self, obj: Any) -> Materializer:
        """The materializer for ``obj``'s type; UnsupportedTypeError if none."""
        t = type(obj)
        for base in t.__mro__:
            found = self._by_type.get(base)
            lazy = _LAZY_TYPES.get((base.__module__.partition(".")[0], base.__qualname__))
            if found is None and lazy is not None:
                # The library is loaded (obj is one of its objects): load its materializer.
                importlib.import_module(lazy)
                found = self._by_type.get(base)
            if found is not None and (base is t or found.subclasses):
                return found
        if dataclasses.is_dataclass(obj):
            return self.by_name("cas.dataclass")
        raise UnsupportedTypeError(
            f"no materializer for {type_name_of(t)}: register one (subclass cas.Materializer), "
            "or allow pickle (put(..., allow_pickle=True)) if you trust whoever will load it"
        )

    def by_name(self, name: str) -> Materializer:
        """The materializer registered as ``name``, importing an optional one on demand.

        Raises UnsupportedTypeError (what ``put(materializer=name)`` reports);
        reading an artifact goes through ``for_artifact``, which says more.
        """
        found, missing = self._find(name)
        if found is not None:
            return found
        if missing is not None:
            install = _LAZY_NAMES[name][1]
            hint = f": pip install '{install}'" if install else ""
            raise UnsupportedTypeError(f"the materializer {name!r} needs {missing}{hint}")
        raise UnsupportedTypeError(f"the materializer {name!r} is not available in this process")

    def _find(self, name: str) -> tuple[Materializer | None, str | None]:
        """The materializer registered as ``name`` (importing a built-in optional one), or the module it lacks."""
        found = self._by_name.get(name)
        if found is None and name in _LAZY_NAMES:
            try:
                importlib.import_module(_LAZY_NAMES[name][0])
            except ImportError as exc:
                return None, exc.name or str(exc)
            found = self._by_name.get(name)
        return found, None

    def for_artifact(self, name: str, version: str, metadata: dict[str, Any]) -> Materializer:
        """The materializer to load an artifact written by ``name`` ``version``; LoadError if this process has none.

        For a materializer that is not registered, the error names the module
        the artifact records (what to import first): never imported here, so
        a store's writer does not choose code for this process to run.
        """
        found, missing = self._find(name)
        module, recorded = read_writer_record(metadata)
        if found is None:
            if missing is not None:
                install = _LAZY_NAMES[name][1] or missing
                installed = installed_versions(tuple(sorted({missing.partition(".")[0], *recorded})))
                raise LoadError(
                    f"the materializer {name} {version} needs {missing}, which is not installed; "
                    f"{versions_text(recorded, installed)}; pip install '{install}'",
                    materializer=name, materializer_version=version, recorded=recorded, installed=installed,
                    module=missing,
                )  # fmt: skip
            installed = installed_versions(tuple(sorted(recorded)))
            if module is not None:
                todo = (f"import {module} (or whatever registers {name}) before loading; cas never imports "
                        "a module because a store names it")  # fmt: skip
            else:
                todo = (f"import the module that registers {name} before loading (the artifact does not record "
                        "which: it was written before cas recorded it)")  # fmt: skip
            raise LoadError(
                f"the materializer {name} {version} is not registered in this process"
                f"{f' (it was written by the module {module})' if module else ''}; "
                f"{versions_text(recorded, installed)}; {todo}",
                materializer=name, materializer_version=version, recorded=recorded, installed=installed,
                module=module,
            )  # fmt: skip
        if not found.can_load(version):
            installed = installed_versions(tuple(sorted({*found.packages, *recorded})))
            raise LoadError(
                f"it was written by {name} version {version}, which this version ({found.version}, "
                f"from {type(found).__module__}) can not read; {versions_text(recorded, installed)}; "
                f"load it with a {name} that reads version {version}"
                f"{f' (the module {module} that wrote it)' if module else ' (upgrade cas)'}",
                materializer=name, materializer_version=version, recorded=recorded, installed=installed,
                module=module,
            )  # fmt: skip
        return found


registry = Registry()
