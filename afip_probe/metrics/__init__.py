"""Metrics on recorded traces and hallucination labels (no torch models imported here).

- `attention`: Eqs. 1–4 and the gating signals on plain arrays;
- `table`: a labelled trace store as one tidy per-token DataFrame (`token_table`);
- `findings`: the Findings 1–2 statistics of that table;
- `stats`: group tests, correlations, bootstrap CIs, quantile groups, ROC/AUC;
- `chair`, `labels`, `pope`: hallucination labels;
- `signals`: every published hallucination signal (lookback ratio, PAS, SVAR, ADS, CGC, IC, ...) from the
  recorded arrays, one registry (docs/signals.md);
- `detect`: detectors on those signals: features, models, training, evaluation, tables, live scoring, and
  the comparison `afip-probe detect eval` reports.

Example:
    >>> from afip_probe import metrics, store                      # doctest: +SKIP
    >>> df = metrics.token_table(store.open("runs/s"))             # doctest: +SKIP
    >>> print(metrics.findings(df).markdown())                     # doctest: +SKIP
"""

from .findings import Findings, findings
from .table import token_table

__all__ = ["Findings", "findings", "token_table"]
