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


ALPHA = 0.05  # a claim is shown when its test is significant at this level, in the paper's direction
CHANCE = 0.05  # an AUC within 0.5 ± CHANCE detects nothing


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims next to what a run measured (`Findings.claims`)."""

    figure: str
    paper: str  # the claim, in words
    measured: str  # the numbers of this run
    verdict: str  # "shown", "shown, weakly (...)", "not shown: ..."


def _p(p: float) -> str:
    """``p = 0.54``, ``p < 1e-300`` (a p-value that underflowed to 0) or ``p n/a``."""
    return "p n/a" if not np.isfinite(p) else f"p = {p:.2g}" if p >= 1e-300 else "p < 1e-300"


def _and(items: list[str]) -> str:
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def _direction(effect: float, p: float, alpha: float, what: str, r: float | None = None) -> str:
    """Shown when `p` < `alpha` with `effect` > 0 (the paper's direction); weakly when |r| < 0.3."""
    if not (np.isfinite(p) and np.isfinite(effect)):
        return "not measurable here (too few object tokens)"
    if p >= alpha:
        return f"not shown: no significant difference ({_p(p)}, not below {alpha})"
    if effect <= 0:
        return f"not shown: the opposite direction ({_p(p)})"
    if r is not None and abs(r) < 0.3:
        return f"shown, weakly ({what}; r = {r:.2f}, closer to 0 than ±0.3)"
    return f"shown ({what})"


def _detects(aucs: dict[str, float], chance: float) -> str:
    """Shown when some signal's AUC is above 0.5 + `chance`; near chance within 0.5 ± `chance`."""
    if not all(np.isfinite(a) for a in aucs.values()):
        return "not measurable here (one class has no tokens)"
    good = [n for n, a in aucs.items() if a > 0.5 + chance]
    if good:
        return f"shown ({', '.join(good)} above chance)"
    if all(abs(a - 0.5) <= chance for a in aucs.values()):
        return f"not shown: every AUC is near 0.5 (chance, within ± {chance})"
    return "not shown: no AUC above chance (some rank hallucinated tokens lower)"


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

    def claims(self, alpha: float = ALPHA, chance: float = CHANCE) -> list[Claim]:
        """Each of the paper's claims next to what these statistics show (`Claim`): shown when the test is
        significant at `alpha` in the paper's direction; an AUC within 0.5 ± `chance` is chance."""
        e, k, v, lv = self.entropy, self.kl_token_entropy, self.var_position, self.low_var
        return [
            Claim("Fig. 2b", "hallucinated object tokens spread their attention over the image: higher "
                  "attention entropy (Eq. 1) than real ones",
                  f"real {e.mean_a:.3f} vs hallucinated {e.mean_b:.3f}, Mann–Whitney {_p(e.mannwhitney_p)}",
                  _direction(e.mean_b - e.mean_a, e.mannwhitney_p, alpha, "hallucinated tokens higher")),
            Claim("Fig. 4 left", "heads disagree (cross-head KL, Eq. 3) when the model is unsure (token "
                  "entropy, Eq. 4)", f"Spearman r = {k.spearman_r:.3f}, {_p(k.spearman_p)}, n = {k.n}",
                  _direction(k.spearman_r, k.spearman_p, alpha, "positive correlation", k.spearman_r)),
            Claim("Fig. 3 left", "visual attention (VAR, Eq. 2) fades along the caption",
                  f"Spearman r of VAR with token position = {v.spearman_r:.3f}, {_p(v.spearman_p)}",
                  _direction(-v.spearman_r, v.spearman_p, alpha, "VAR falls", v.spearman_r)),
            Claim("Fig. 3 right", f"tokens with low VAR hallucinate more (lowest {lv.quantile:.0%} vs the rest)",
                  f"hallucination rate {lv.low_rate:.3f} vs {lv.rest_rate:.3f}, Fisher {_p(lv.fisher_p)}",
                  _direction(lv.low_rate - lv.rest_rate, lv.fisher_p, alpha, "low-VAR tokens hallucinate more")),
            Claim("Fig. 5", "the text–visual gap (peak gap T − V, mean gap) detects hallucinated tokens",
                  f"AUC peak gap {self.auc_peak_gap:.3f}, mean gap {self.auc_mean_gap:.3f}",
                  _detects({"peak gap": self.auc_peak_gap, "mean gap": self.auc_mean_gap}, chance)),
        ]

    def claims_markdown(self, alpha: float = ALPHA, chance: float = CHANCE) -> str:
        """`claims` as a Markdown table: figure, the paper's claim, the numbers here, what they show."""
        lines = [f"| figure | the paper's claim | measured here (layers: {self.layer_range}) | shown here? |",
                 "|---|---|---|---|"]
        lines += [f"| {c.figure} | {c.paper} | {c.measured} | {c.verdict} |" for c in self.claims(alpha, chance)]
        return "\n".join(lines)

    def claims_summary(self, alpha: float = ALPHA, chance: float = CHANCE) -> str:
        """One paragraph in words: which claims these statistics show and which they do not."""
        cs = self.claims(alpha, chance)
        shown = [c.figure for c in cs if c.verdict.startswith("shown")]
        not_shown = [c.figure for c in cs if not c.verdict.startswith("shown")]
        return (f"On these {self.n_real + self.n_hallucinated} object tokens ({self.n_hallucinated} hallucinated), "
                f"the paper's claims hold for {_and(shown) or 'none of the figures'}; they do not hold for "
                f"{_and(not_shown) or 'none'} (a claim holds when its test is significant at p < {alpha} in "
                f"the paper's direction; an AUC within 0.5 ± {chance} is chance).")

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
