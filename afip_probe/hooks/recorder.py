"""The recorder: turns last-row scores of every layer and step into per-sample traces.

One `generate()` call is one *run*. Row t of a run is the forward pass that produced generated
token t (t = 0 is prefill's last row), so every recorded value lines up with the token it explains.

Example:
    >>> from afip_probe import trace
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava()
    >>> inputs = adapter_for(model, processor).build_inputs(tiny.random_images(1), "describe")
    >>> with trace(model, processor) as rec:
    ...     _ = model.generate(**inputs, max_new_tokens=3)
    >>> rec.traces[0].head["var"].shape            # [T, L, H]
    (3, 2, 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import AfipError
from ..models.base import ImageLayout
from .rowstats import HEAD_FIELDS, LAYER_FIELDS, RowStats, RunMasks, apply_row_mask, row_stats

LEVELS = ("stats", "maps", "full")


@dataclass(frozen=True)
class RecordConfig:
    """What to keep per generated token (DESIGN §3).

    level: ``stats`` (per-head scalars), ``maps`` (+ head-averaged image attention per layer) or
    ``full`` (+ per-head pre-softmax image rows). Arrays of the larger levels are kept in
    `array_dtype` (float16 by default, float32 for exact comparisons).
    """

    level: str = "stats"
    array_dtype: str = "float16"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise AfipError(f"unknown record level {self.level!r}: use one of {', '.join(LEVELS)}")
        if self.array_dtype not in ("float16", "float32"):
            raise AfipError(f"array_dtype must be float16 or float32, not {self.array_dtype!r}")


@dataclass
class SampleTrace:
    """Everything recorded for one sample of one `generate()` call (numpy, on the CPU)."""

    prompt_ids: list[int]
    generated_ids: list[int]
    layout: ImageLayout
    head: dict[str, np.ndarray]  # field -> [T, L, H] float32
    layer: dict[str, np.ndarray]  # field -> [T, L] float32
    token_entropy: np.ndarray  # [T] entropy of softmax(raw logits) (Eq. 4)
    logprob: np.ndarray  # [T] log-probability of the generated token under the raw logits
    maps: np.ndarray | None = None  # [T, L, n] head-averaged post-softmax image attention
    scores: np.ndarray | None = None  # [T, L, H, n] per-head pre-softmax image scores
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. corrected rows

    @property
    def num_tokens(self) -> int:
        return len(self.generated_ids)


class _Rows:
    """Per-layer buffers of row statistics, one entry per step."""

    def __init__(self, num_layers: int):
        self.head: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]  # per layer: steps x [B, F, H]
        self.layer: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]  # steps x [B, F]
        self.maps: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]  # steps x [B, n]
        self.scores: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]  # steps x [B, H, n]

    def add(self, layer: int, st: Any, config: "RecordConfig", keep_scores: bool = True) -> None:
        self.head[layer].append(st.head)
        self.layer[layer].append(st.layer)
        if config.level != "stats":
            dtype = getattr(torch, config.array_dtype)
            self.maps[layer].append(st.img_probs.mean(1).to(dtype))
            if config.level == "full" and keep_scores:
                self.scores[layer].append(st.img_scores.to(dtype))


class _Run:
    """Buffers of one generate() call, on the model's device until the run ends."""

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, layouts: list[ImageLayout],
                 masks: RunMasks, num_layers: int):
        self.input_ids = input_ids
        self.pad = (attention_mask == 0).sum(-1).tolist() if attention_mask is not None else [0] * len(input_ids)
        self.layouts = layouts
        self.masks = masks
        self.num_layers = num_layers
        self.step = -1
        self.raw = _Rows(num_layers)
        self.corrected = _Rows(num_layers)  # rows after score modifiers (a corrector), when any is on
        self.entropy: list[torch.Tensor] = []  # steps x [B]
        self.logprob: list[torch.Tensor] = []  # steps x [B]
        self.pending_logp: torch.Tensor | None = None  # [B, V] of the last step
        # rows of the current step, summarised for all layers at once by `Recorder._flush`:
        # (kind, layer, scores [B, H, kv], allowed [B, kv] or the attention mask for kind "raw")
        self.pending: list[tuple[str, int, torch.Tensor, Any]] = []


class Recorder:
    """Collects traces while `afip_probe.trace(...)` is active. Read `traces` after generate()."""

    def __init__(self, num_layers: int, image_token_id: int, config: RecordConfig | None = None):
        self.config = config or RecordConfig()
        self.num_layers = num_layers
        self.image_token_id = image_token_id
        self.traces: list[SampleTrace] = []
        self._run: _Run | None = None

    @property
    def active(self) -> bool:
        return self._run is not None

    # ------------------------------------------------------------------ run lifecycle
    def start_run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, layouts: list[ImageLayout],
                  masks: RunMasks | None = None) -> None:
        masks = masks if masks is not None else RunMasks(input_ids == self.image_token_id)
        self._run = _Run(input_ids, attention_mask, layouts, masks, self.num_layers)

    def abort_run(self) -> None:
        self._run = None

    def begin_step(self, input_ids: torch.Tensor | None) -> None:
        """Called at the start of each forward pass; resolves the previous step's chosen-token logprob."""
        self._flush()
        run = self._run
        if run is None:
            return
        if run.pending_logp is not None and input_ids is not None:
            chosen = input_ids[:, -1:].to(run.pending_logp.device)
            run.logprob.append(run.pending_logp.gather(-1, chosen).squeeze(-1))
            run.pending_logp = None
        run.step += 1

    def on_logits(self, logits: torch.Tensor) -> None:
        """Raw logits of the step ([B, q, V]); keeps Eq. 4 entropy and the log-softmax for logprob."""
        self._flush()
        run = self._run
        if run is None:
            return
        logp = torch.log_softmax(logits[:, -1, :].float(), dim=-1)  # [B, V]
        run.entropy.append(-(logp.exp() * logp).sum(-1))
        run.pending_logp = logp

    def on_scores(self, layer: int, scores: torch.Tensor, allowed: torch.Tensor) -> None:
        """Last-row pre-softmax scores [B, H, kv] of `layer` (masked) and the keys the mask allows [B, kv]."""
        if self._run is not None:
            self._run.pending.append(("scores", layer, scores, allowed))

    def on_raw_scores(self, layer: int, scores: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
        """Unmasked last-row scores [B, H, kv] and the layer's attention mask; masked in the per-step batch."""
        if self._run is not None:
            self._run.pending.append(("raw", layer, scores, attention_mask))

    def on_corrected(self, layer: int, scores: torch.Tensor, allowed: torch.Tensor) -> None:
        """The same row after score modifiers; kept as ``extra["corrected/..."]`` next to the raw row."""
        if self._run is not None:
            self._run.pending.append(("corrected", layer, scores, allowed))

    def _flush(self) -> None:
        """Summarise the step's pending rows: one `row_stats` call per kind (and mask) for all layers."""
        run = self._run
        if run is None or not run.pending:
            return
        groups: dict[tuple[str, int], list[tuple[int, torch.Tensor, Any]]] = {}
        for kind, layer, scores, extra in run.pending:
            key = (kind, id(extra) if kind == "raw" else 0)
            groups.setdefault(key, []).append((layer, scores, extra))
        run.pending = []
        for (kind, _), items in groups.items():
            layers = [layer for layer, _, _ in items]
            stacked = torch.stack([sc for _, sc, _ in items])  # [L', B, H, kv]
            n, b, h, kv = stacked.shape
            if kind == "raw":
                stacked, allowed = apply_row_mask(stacked, items[0][2])
                allowed = allowed.repeat(n, 1)  # [L' B, kv]
            else:
                allowed = torch.cat([a for _, _, a in items])  # [L' B, kv]
            st = row_stats(stacked.reshape(n * b, h, kv), run.masks.keys(kv).repeat(n, 1), allowed,
                           run.masks.stacked_index(n))
            rows = run.corrected if kind == "corrected" else run.raw
            head, lay = st.head.view(n, b, *st.head.shape[1:]), st.layer.view(n, b, -1)
            probs, img = st.img_probs.view(n, b, h, -1), st.img_scores.view(n, b, h, -1)
            for i, layer in enumerate(layers):
                rows.add(layer, RowStats(head=head[i], layer=lay[i], img_probs=probs[i], img_scores=img[i]),
                         self.config, keep_scores=kind != "corrected")

    def finish_run(self, sequences: torch.Tensor, eos_token_ids: list[int]) -> list[SampleTrace]:
        """Split the run's buffers into one `SampleTrace` per sample and append them to `traces`."""
        self._flush()
        run = self._run
        self._run = None
        if run is None:
            return []
        prompt_len = run.input_ids.shape[1]
        generated = sequences[:, prompt_len:].cpu()
        steps = run.step + 1
        if run.pending_logp is not None:  # the last step's token is only in the output
            run.logprob.append(run.pending_logp.gather(-1, sequences[:, -1:].to(run.pending_logp.device)).squeeze(-1))
        if generated.shape[1] != steps or any(len(h) != steps for h in run.raw.head):
            raise AfipError(
                f"recorded {steps} forward passes for {generated.shape[1]} generated tokens; beam search, "
                "assisted decoding and other multi-pass strategies cannot be traced (use greedy or sampling)"
            )

        def stacked(buffers: list[list[torch.Tensor]]) -> np.ndarray:
            # per layer: steps x [B, ...] -> [T, L, B, ...]
            return torch.stack([torch.stack(b) for b in buffers], dim=1).float().cpu().numpy()

        head = stacked(run.raw.head)  # [T, L, B, F, H]
        layer = stacked(run.raw.layer)  # [T, L, B, F]
        maps = stacked(run.raw.maps) if self.config.level != "stats" else None  # [T, L, B, n]
        scores = stacked(run.raw.scores) if self.config.level == "full" else None  # [T, L, B, H, n]
        corrected = any(run.corrected.head)
        c_head = stacked(run.corrected.head) if corrected else None  # [T, L, B, F, H]
        c_layer = stacked(run.corrected.layer) if corrected else None  # [T, L, B, F]
        c_maps = stacked(run.corrected.maps) if corrected and maps is not None else None  # [T, L, B, n]
        entropy = torch.stack(run.entropy, dim=1).cpu().numpy()  # [B, T]
        logprob = torch.stack(run.logprob, dim=1).cpu().numpy()  # [B, T]
        eos = set(eos_token_ids)
        out = []
        array_dtype = np.dtype(self.config.array_dtype)
        for b, layout in enumerate(run.layouts):
            ids = generated[b].tolist()
            length = next((i + 1 for i, tok in enumerate(ids) if tok in eos), len(ids))
            n = len(layout.positions)
            trace = SampleTrace(
                prompt_ids=run.input_ids[b, run.pad[b]:].tolist(),
                generated_ids=ids[:length],
                layout=layout,
                head={f: np.ascontiguousarray(head[:length, :, b, i]) for i, f in enumerate(HEAD_FIELDS)},
                layer={f: np.ascontiguousarray(layer[:length, :, b, i]) for i, f in enumerate(LAYER_FIELDS)},
                token_entropy=entropy[b, :length].copy(),
                logprob=logprob[b, :length].copy(),
                maps=None if maps is None else maps[:length, :, b, :n].astype(array_dtype),
                scores=None if scores is None else scores[:length, :, b, :, :n].astype(array_dtype),
            )
            if c_head is not None and c_layer is not None:
                trace.extra.update({f"corrected/head/{f}": np.ascontiguousarray(c_head[:length, :, b, i])
                                    for i, f in enumerate(HEAD_FIELDS)})
                trace.extra.update({f"corrected/layer/{f}": np.ascontiguousarray(c_layer[:length, :, b, i])
                                    for i, f in enumerate(LAYER_FIELDS)})
                if c_maps is not None:
                    trace.extra["corrected/maps"] = c_maps[:length, :, b, :n].astype(array_dtype)
            out.append(trace)
        self.traces.extend(out)
        return out
