"""The paper's Findings 1–2 as numbers, from a token table (`afip_probe.metrics.table.token_table`).

Finding 1 (spatial inconsistency): hallucinated object tokens have higher attention entropy over the
image (Fig. 2b), and cross-head KL goes with token entropy (Fig. 4 left).
Finding 2 (temporal fading): VAR falls along the caption and low-VAR tokens hallucinate more
(Fig. 3); the text–visual gap detects hallucinated tokens (Fig. 5).
All statistics use object tokens only (label ``real`` or ``hallucinated``).

Example:
    >>> f = findings(df)                 # doctest: +SKIP
    >>> print(f.markdown())              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .stats import Correlation, GroupTest, LowRate, compare_groups, correlate, low_value_rate, roc


def object_tokens(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of real and hallucinated object tokens."""
    return df[df.label.isin(["real", "hallucinated"])]


def is_hallucinated(df: pd.DataFrame) -> np.ndarray:
    return (df.label == "hallucinated").to_numpy()


@dataclass(frozen=True)
class Findings:
    """Finding 1 and 2 statistics of one token table at one layer range."""

    layer_range: str
    n_real: int
    n_hallucinated: int
    entropy: GroupTest  # attention entropy (Eq. 1): a = real, b = hallucinated
    kl_token_entropy: Correlation  # cross-head KL vs token entropy over object tokens
    token_entropy: GroupTest  # token entropy: a = real, b = hallucinated
    low_var: LowRate  # hallucination rate among the lowest 30 % VAR vs the rest
    var_position: Correlation  # VAR vs step over all tokens (temporal fading)
    auc_peak_gap: float
    auc_mean_gap: float

    def rows(self) -> list[tuple[str, str]]:
        e, k, lv = self.entropy, self.kl_token_entropy, self.low_var
        return [
            ("object tokens (real / hallucinated)", f"{self.n_real} / {self.n_hallucinated}"),
            ("attention entropy, real vs hallucinated (mean)", f"{e.mean_a:.4f} vs {e.mean_b:.4f}"),
            ("  Mann–Whitney p / Welch p", f"{e.mannwhitney_p:.3g} / {e.welch_p:.3g}"),
            ("token entropy, real vs hallucinated (mean)",
             f"{self.token_entropy.mean_a:.4f} vs {self.token_entropy.mean_b:.4f} "
             f"(MW p {self.token_entropy.mannwhitney_p:.3g})"),
            ("cross-head KL vs token entropy: Spearman r (p)", f"{k.spearman_r:.3f} ({k.spearman_p:.3g})"),
            ("  Pearson r (p)", f"{k.pearson_r:.3f} ({k.pearson_p:.3g})"),
            ("VAR vs token position: Spearman r (p)",
             f"{self.var_position.spearman_r:.3f} ({self.var_position.spearman_p:.3g})"),
            (f"hallucination rate, lowest {lv.quantile:.0%} VAR vs rest",
             f"{lv.low_rate:.3f} vs {lv.rest_rate:.3f} (Fisher p {lv.fisher_p:.3g})"),
            ("AUC of the peak gap T − V", f"{self.auc_peak_gap:.3f}"),
            ("AUC of the mean gap", f"{self.auc_mean_gap:.3f}"),
        ]

    def markdown(self) -> str:
        lines = [f"| statistic (layers: {self.layer_range}) | value |", "|---|---|"]
        lines += [f"| {k.strip()} | {v} |" for k, v in self.rows()]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "layer_range": self.layer_range, "n_real": self.n_real, "n_hallucinated": self.n_hallucinated,
            "entropy": self.entropy.as_dict(), "token_entropy": self.token_entropy.as_dict(),
            "kl_token_entropy": self.kl_token_entropy.as_dict(), "low_var": self.low_var.as_dict(),
            "var_position": self.var_position.as_dict(),
            "auc_peak_gap": self.auc_peak_gap, "auc_mean_gap": self.auc_mean_gap,
        }


def findings(df: pd.DataFrame, layer_range: str = "all", low_quantile: float = 0.3) -> Findings:
    """Compute the Findings 1–2 statistics of a token table at one layer range (column suffix)."""
    obj = object_tokens(df)
    real, hall = obj[obj.label == "real"], obj[obj.label == "hallucinated"]
    r = layer_range
    y = is_hallucinated(obj)
    return Findings(
        layer_range=r,
        n_real=len(real),
        n_hallucinated=len(hall),
        entropy=compare_groups(real[f"attn_entropy_{r}"], hall[f"attn_entropy_{r}"]),
        kl_token_entropy=correlate(obj[f"kl_{r}"], obj.token_entropy),
        token_entropy=compare_groups(real.token_entropy, hall.token_entropy),
        low_var=low_value_rate(obj[f"var_{r}"], y, low_quantile),
        var_position=correlate(df.step, df[f"var_{r}"]),
        auc_peak_gap=roc(obj[f"peak_gap_{r}"], y).auc,
        auc_mean_gap=roc(obj[f"mean_gap_{r}"], y).auc,
    )
