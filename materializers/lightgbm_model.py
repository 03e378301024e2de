"""lightgbm Boosters and their scikit-learn wrappers, in lightgbm's own model string.

A Booster is one file, ``model.txt`` (``model_to_string()``, UTF-8). A wrapper
(LGBMClassifier, LGBMRegressor, LGBMRanker, ... any LGBMModel subclass) adds
``params`` (its ``get_params()`` as plain values; a callable one, such as a
custom objective, makes it UnsupportedTypeError: pickle, with consent) and
``fitted``: what ``fit`` sets besides the booster (the feature count, the
objective, the classes of a classifier), as plain values. Loading finds the
class among the classes already imported and sets those attributes back
(lightgbm has no public way to rebuild a fitted wrapper from a booster; this
follows lightgbm 4's attributes, hence ``lightgbm>=4`` in the extra). Stored
bytes go through :mod:`materializers.model_probe` first: lightgbm's parser
crashes on crafted input.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.preprocessing import LabelEncoder

from cas.errors import CorruptObjectError, IncompatibleArtifactError, UnsupportedTypeError
from materializers import model_probe, valuecodec, visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer, type_name_of
from materializers.model_params import params_table
from materializers.visuals import Visualization

_MODEL = "model.txt"
_PARAMS = "params"
_FITTED = "fitted"
_CLASS_KINDS = "biufU"  # classes that are plain values: bools, ints, floats, strings


def _read_booster(reader: ArtifactReader) -> lgb.Booster:
    """The booster, once a probe process has parsed its model string without crashing."""
    data = reader.read_bytes(_MODEL)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptObjectError("stored lightgbm model string is not UTF-8") from None
    model_probe.check("lightgbm", data)
    try:
        return lgb.Booster(model_str=text)
    except lgb.basic.LightGBMError as exc:
        raise CorruptObjectError(f"stored lightgbm model does not load: {str(exc)[:300]}") from None


class LGBMBoosterMaterializer(Materializer):
    """lightgbm.Booster."""

    name = "cas.lightgbm.booster"
    version = "1"
    packages = ("lightgbm",)
    types = (lgb.Booster,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        writer.write_bytes(_MODEL, obj.model_to_string().encode("utf-8"))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        if reader.paths() != [_MODEL]:
            raise CorruptObjectError(f"stored files are not a lightgbm booster: {reader.paths()[:10]}")
        return _read_booster(reader)

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {"num_trees": obj.num_trees(), "num_features": obj.num_feature()}

    def visualize(self, obj: Any) -> list[Visualization]:
        return [visuals.summary([("class", "lightgbm.Booster"), *self.metadata(obj).items()])]


class LGBMModelMaterializer(Materializer):
    """lightgbm's scikit-learn wrappers (LGBMModel subclasses): params, fitted attributes and the booster."""

    name = "cas.lightgbm.sklearn"
    version = "1"
    packages = ("lightgbm",)
    types = (lgb.LGBMModel,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        writer.write_bytes(_PARAMS, valuecodec.encode(obj.get_params(deep=False)))
        if not obj.__sklearn_is_fitted__():
            return
        if not isinstance(obj._objective, str):
            raise UnsupportedTypeError("a lightgbm model with a callable objective can only be stored with pickle")
        fitted: dict[str, Any] = {
            "n_features": int(obj._n_features),
            "n_features_in": int(obj._n_features_in),
            "objective": obj._objective,
            "fitted_with_feature_names": bool(getattr(obj, "_fitted_with_feature_names", False)),
        }
        classes = getattr(obj, "_classes", None)
        if classes is not None:
            classes = np.asarray(classes)
            if classes.dtype.kind not in _CLASS_KINDS or classes.ndim != 1:
                raise UnsupportedTypeError(f"lightgbm classes of dtype {classes.dtype} can only be stored with pickle")
            fitted["classes"] = {"dtype": classes.dtype.str, "values": classes.tolist()}
        writer.write_bytes(_FITTED, valuecodec.encode(fitted))
        writer.write_bytes(_MODEL, obj.booster_.model_to_string().encode("utf-8"))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        paths = reader.paths()
        if paths not in ([_FITTED, _MODEL, _PARAMS], [_PARAMS]):
            raise CorruptObjectError(f"stored files are not a lightgbm estimator: {paths[:10]}")
        params = valuecodec.decode(reader.read_bytes(_PARAMS))
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise CorruptObjectError("stored lightgbm params are not a map of names")
        model = type_(**params)
        if _MODEL not in paths:
            return model
        fitted = valuecodec.decode(reader.read_bytes(_FITTED))
        if not isinstance(fitted, dict):
            raise CorruptObjectError("stored lightgbm fitted attributes are not a map")
        booster = _read_booster(reader)
        n_features, n_in, objective = fitted.get("n_features"), fitted.get("n_features_in"), fitted.get("objective")
        if type(n_features) is not int or n_features != booster.num_feature() or type(n_in) is not int:
            raise CorruptObjectError("stored lightgbm feature counts disagree with the model")
        if not isinstance(objective, str):
            raise CorruptObjectError("stored lightgbm objective is not a name")
        model._Booster = booster
        model._n_features, model._n_features_in, model._objective = n_features, n_in, objective
        model._fitted_with_feature_names = bool(fitted.get("fitted_with_feature_names"))
        model._best_iteration = booster.best_iteration
        model._best_score, model._evals_result = {}, {}
        model._other_params = {}
        model.fitted_ = True
        if "classes" in fitted:
            found = fitted["classes"]
            if not isinstance(found, dict) or not isinstance(found.get("values"), list):
                raise CorruptObjectError("stored lightgbm classes are not a list")
            dtype = np.dtype(str(found.get("dtype")))
            if dtype.kind not in _CLASS_KINDS:
                raise CorruptObjectError(f"stored lightgbm classes have dtype {dtype}")
            classes = np.asarray(found["values"], dtype=dtype)
            if classes.ndim != 1 or len(np.unique(classes)) != len(classes):
                raise CorruptObjectError("stored lightgbm classes are not distinct values")
            model._classes, model._n_classes = classes, len(classes)
            model._le = LabelEncoder().fit(classes)
            model._class_map = dict(zip(model._le.classes_, model._le.transform(model._le.classes_), strict=True))
        return model

    def resolve_type(self, type_name: str, metadata: dict[str, Any]) -> type:
        found = super().resolve_type(type_name, metadata)
        if type_name_of(found) != type_name:
            raise IncompatibleArtifactError(
                f"{type_name} is not an LGBMModel class imported in this process: import the module that defines it"
            )
        return found

    def metadata(self, obj: Any) -> dict[str, Any]:
        facts: dict[str, Any] = {"class": type_name_of(type(obj)), "fitted": bool(obj.__sklearn_is_fitted__())}
        if facts["fitted"]:
            facts.update(num_trees=obj.booster_.num_trees(), num_features=obj.booster_.num_feature())
        return facts

    def visualize(self, obj: Any) -> list[Visualization]:
        return [visuals.summary(list(self.metadata(obj).items())), params_table(obj.get_params(deep=False))]
