"""xgboost Boosters and their scikit-learn wrappers, in xgboost's own UBJSON model format.

A Booster is one file, ``model.ubj`` (``save_raw("ubj")``). A wrapper
(XGBClassifier, XGBRegressor, XGBRanker, ... any XGBModel subclass) adds
``params``: its ``get_params()`` as plain values (a callable parameter such as
a custom objective or callback makes it UnsupportedTypeError: pickle, with
consent); an unfitted wrapper has no model file. Loading finds the wrapper
class among the classes already imported (never imports what the store names),
builds it from the params and loads the model into it. Stored bytes go
through :mod:`materializers.model_probe` first: xgboost's parser crashes on
crafted input.
"""

from __future__ import annotations

from typing import Any

import xgboost as xgb

from cas.errors import CorruptObjectError, IncompatibleArtifactError
from materializers import model_probe, valuecodec, visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer, type_name_of
from materializers.model_params import params_table
from materializers.visuals import Visualization

_MODEL = "model.ubj"
_PARAMS = "params"


def _read_model(reader: ArtifactReader) -> bytearray:
    """The model's bytes, once a probe process has loaded them without crashing."""
    data = bytearray(reader.read_bytes(_MODEL))
    model_probe.check("xgboost", bytes(data))
    return data


def _booster_facts(booster: xgb.Booster) -> list[tuple[str, Any]]:
    return [("boosted rounds", booster.num_boosted_rounds()), ("features", booster.num_features())]


class XGBoosterMaterializer(Materializer):
    """xgboost.Booster."""

    name = "cas.xgboost.booster"
    version = "1"
    packages = ("xgboost-cpu", "xgboost")
    types = (xgb.Booster,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        writer.write_bytes(_MODEL, bytes(obj.save_raw("ubj")))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        if reader.paths() != [_MODEL]:
            raise CorruptObjectError(f"stored files are not an xgboost booster: {reader.paths()[:10]}")
        booster = xgb.Booster()
        try:
            booster.load_model(_read_model(reader))
        except xgb.core.XGBoostError as exc:
            raise CorruptObjectError(f"stored xgboost model does not load: {str(exc)[:300]}") from None
        return booster

    def metadata(self, obj: Any) -> dict[str, Any]:
        return {"num_boosted_rounds": obj.num_boosted_rounds(), "num_features": obj.num_features()}

    def visualize(self, obj: Any) -> list[Visualization]:
        return [visuals.summary([("class", "xgboost.Booster"), *_booster_facts(obj)])]


class XGBModelMaterializer(Materializer):
    """xgboost's scikit-learn wrappers (XGBModel subclasses): params and the booster."""

    name = "cas.xgboost.sklearn"
    version = "1"
    packages = ("xgboost-cpu", "xgboost")
    types = (xgb.XGBModel,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        writer.write_bytes(_PARAMS, valuecodec.encode(obj.get_params(deep=False)))
        if obj.__sklearn_is_fitted__():
            writer.write_bytes(_MODEL, bytes(obj.get_booster().save_raw("ubj")))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        paths = reader.paths()
        if paths not in ([_MODEL, _PARAMS], [_PARAMS]):
            raise CorruptObjectError(f"stored files are not an xgboost estimator: {paths[:10]}")
        params = valuecodec.decode(reader.read_bytes(_PARAMS))
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise CorruptObjectError("stored xgboost params are not a map of names")
        model = type_(**params)
        if _MODEL in paths:
            try:
                model.load_model(_read_model(reader))
            except (xgb.core.XGBoostError, TypeError) as exc:
                raise CorruptObjectError(f"stored xgboost model does not fit {type_.__name__}: {exc}") from None
        return model

    def resolve_type(self, type_name: str, metadata: dict[str, Any]) -> type:
        found = super().resolve_type(type_name, metadata)
        if type_name_of(found) != type_name:
            raise IncompatibleArtifactError(
                f"{type_name} is not an XGBModel class imported in this process: import the module that defines it"
            )
        return found

    def metadata(self, obj: Any) -> dict[str, Any]:
        facts: dict[str, Any] = {"class": type_name_of(type(obj)), "fitted": bool(obj.__sklearn_is_fitted__())}
        if facts["fitted"]:
            booster = obj.get_booster()
            facts.update(num_boosted_rounds=booster.num_boosted_rounds(), num_features=booster.num_features())
        return facts

    def visualize(self, obj: Any) -> list[Visualization]:
        facts = [(k, v) for k, v in self.metadata(obj).items()]
        return [visuals.summary(facts), params_table(obj.get_params(deep=False))]
