"""The parameter table shown for a model (scikit-learn, xgboost and lightgbm estimators)."""

from __future__ import annotations

from typing import Any

from materializers import visuals
from materializers.visuals import Visualization


def params_table(params: dict[str, Any]) -> Visualization:
    """A model's parameters as an HTML table (nested estimators summarized)."""
    rows = [(k, visuals.brief(v)) for k, v in sorted(params.items())]
    return Visualization("parameters", "text/html", visuals.html_doc(visuals.html_table(rows, ("parameter", "value"))))
