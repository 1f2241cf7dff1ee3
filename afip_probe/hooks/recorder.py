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

import contextlib
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import torch

from ..errors import AfipError
from ..records import HEAD_FIELDS, LAYER_FIELDS, ImageLayout, RecordConfig, RowArrays, SampleTrace, array_name
from .rowstats import RowStats, RunMasks, Workspace, mask_rows, row_scores, row_stats


def _per_image(image_var: np.ndarray | None, length: int, b: int, layout: ImageLayout) -> np.ndarray | None:
    """Sample b's VAR of each of its images [T, L, H, I] from the run's [T, L, B, H, I_max]; None for a sample of
    one image (its VAR is ``head/var``)."""
    if image_var is None or layout.num_images < 2:
        return None
    return np.ascontiguousarray(image_var[:length, :, b, :, : layout.num_images])


class _Rows:
    """Row statistics of a run: per step, one entry per group of layers summarised together."""

    def __init__(self, num_layers: int):
        self.num_layers = num_layers
        # name -> [(step, layers, tensor [L', B, ...])]; names: head, layer, maps, scores, image_var
        self.items: dict[str, list[tuple[int, list[int], torch.Tensor]]] = {
            k: [] for k in ("head", "layer", "maps", "scores", "image_var")}

    def add(self, step: int, layers: list[int], st: RowStats, config: "RecordConfig", keep_scores: bool = True) -> None:
        self.items["head"].append((step, layers, st.head))  # [L', B, F, H]
        self.items["layer"].append((step, layers, st.layer))  # [L', B, F]
        if st.image_var is not None:  # prompts of several images: VAR of each
            self.items["image_var"].append((step, layers, st.image_var))  # [L', B, H, I]
        if config.level != "stats":
            dtype = getattr(torch, config.array_dtype)
            # copies: the statistics may be views of the run's reused score buffer
            self.items["maps"].append((step, layers, st.img_mean_probs.to(dtype, copy=True)))  # [L', B, n]
            if config.level == "full" and keep_scores:
                self.items["scores"].append((step, layers, st.img_scores.to(dtype, copy=True)))  # [L', B, H, n]

    def covers(self, steps: int) -> bool:
        """Whether every layer has a row for each of `steps` steps."""
        seen = {(step, layer) for step, layers, _ in self.items["head"] for layer in layers}
        return len(seen) == steps * self.num_layers and all(step < steps for step, _ in seen)

    def array(self, name: str, steps: int) -> np.ndarray | None:
        """[T, L, B, ...] numpy array of one statistic in its kept dtype, or None if it was not kept."""
        items = self.items[name]
        if not items:
            return None
        first = items[0][2]
        out = torch.zeros((steps, self.num_layers, *first.shape[1:]), dtype=first.dtype, device=first.device)
        for step, layers, t in items:
            out[step, layers] = t
        items.clear()  # the assembled array replaces the per-step rows
        return out.cpu().numpy()


#: one layer's raw row: (layer, last query [B, H, 1, d], keys [B, H_kv, kv, d], scaling, mask, softcap)
_RawRow = tuple[int, torch.Tensor, torch.Tensor, "float | None", Any, "float | None"]


class _Block:
    """Consecutive steps' masked score rows staged for one `row_stats` call, for models whose rows are small
    (the organism; any model where a summary's ~45 small operations per step cost more than its arithmetic).

    Step s's row of kv keys lies in a [KV]-key row, KV = kv0 + capacity − 1: its first kv − 1 keys in place,
    −inf (and not allowed) up to KV − 1, and the query's own key last, where `row_stats` expects it. Only
    layers whose key 0 is position 0 are staged (no sliding window), so every step shares one image index.
    """

    #: stage when a step's rows take at most this many bytes (then up to `MAX_STEPS` steps per summary)
    STEP_BYTES = 256 * 1024
    MAX_STEPS = 64
    MIN_STEPS = 8  # fewer: the copy in costs about what batching saves, summarise every step

    def __init__(self, work: Workspace, start: int, layers: list[int], rows: torch.Tensor, steps: int):
        n_layers, b, h, kv = rows.shape
        self.start, self.layers, self.kv0, self.capacity, self.count = start, layers, kv, steps, 0
        self.width = kv + steps - 1  # KV
        self.rows = work.take("block", (steps, n_layers, b, h, self.width), rows.device)  # [S, L', B, H, KV]
        self.allowed = torch.zeros(steps, 1, b, self.width, dtype=torch.bool, device=rows.device)  # [S, 1, B, KV]

    @staticmethod
    def steps_for(rows: torch.Tensor) -> int:
        """How many steps to stage for rows [L', B, H, kv] (1: summarise every step)."""
        per_step = rows[..., :1].numel() * (rows.shape[-1] + _Block.MAX_STEPS) * 4
        return max(1, min(_Block.MAX_STEPS, _Block.STEP_BYTES * _Block.MAX_STEPS // max(per_step, 1)))

    def accepts(self, step: int, layers: list[int], rows: torch.Tensor) -> bool:
        s = step - self.start
        return (0 <= s < self.capacity and s == self.count and layers == self.layers
                and rows.shape[-1] == self.kv0 + s and rows.shape[:-1] == self.rows.shape[1:-1])

    def stage(self, rows: torch.Tensor, allowed: torch.Tensor) -> None:
        """Copy one step's rows [L', B, H, kv] and allowed keys [B, kv] in; the own key goes last."""
        kv, s = rows.shape[-1], self.count
        dst = self.rows[s]
        dst[..., : kv - 1].copy_(rows[..., : kv - 1])
        dst[..., kv - 1: self.width - 1].fill_(float("-inf"))
        dst[..., -1].copy_(rows[..., -1])
        row = self.allowed[s, 0]
        row[:, : kv - 1].copy_(allowed[..., : kv - 1])
        row[:, -1].copy_(allowed[..., -1])
        self.count += 1

    @property
    def full(self) -> bool:
        return self.count == self.capacity


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
        # modifier path: (kind, layer, masked scores [B, H, kv], allowed [B, kv]);
        # raw path: each layer's last query row and keys, multiplied out per step into a reused buffer
        self.pending: list[tuple[str, int, torch.Tensor, torch.Tensor]] = []
        self.raw_rows: list[_RawRow] = []
        # single-read decoding (`trace(exact=False)`): rows the interceptor scored and masked into the step
        # buffer while computing the layer's output from them: (layer, heads, allowed [B, kv])
        self.decoded: list[tuple[int, int, torch.Tensor]] = []
        self.decode_buffers: dict[int, str] = {}  # key length -> step buffer name (reset every step)
        self.block: _Block | None = None  # steps staged for one batched summary (small models, see _Block)


def _since(items: list[tuple[int, list[int], torch.Tensor]], first: int) -> list[tuple[int, list[int], torch.Tensor]]:
    """The entries of steps `first` and later at the end of a run's rows (appended in step order): read from
    the tail, so a streamer asking every few tokens does not rescan the whole run."""
    out = []
    for item in reversed(items):
        if item[0] < first:
            break
        out.append(item)
    return out


@dataclass
class LiveSteps:
    """Statistics of consecutive steps of one sample, read while generate() runs (`Recorder.steps_since`)."""

    first: int  # the step of row 0
    arrays: dict[str, np.ndarray]  # named as stored (`array_name`), [S, L, ...]
    token_entropy: np.ndarray  # [S]
    logprob: np.ndarray  # [S] of the chosen tokens


class Switch:
    """Something switched on for a model until `close()`, or the end of a ``with`` block: `open` keeps a
    context (the interceptor's installation) entered, so the object works with and without ``with``."""

    _closer: contextlib.ExitStack | None = None

    @property
    def is_open(self) -> bool:
        return self._closer is not None

    def open(self, context: contextlib.AbstractContextManager[Any]) -> None:
        """Enter `context` and keep it entered until `close()`."""
        self.close()
        closer = contextlib.ExitStack()
        closer.enter_context(context)
        self._closer = closer

    def close(self) -> None:
        """Switch off and restore the model (idempotent)."""
        if self._closer is not None:
            closer, self._closer = self._closer, None
            closer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Recorder(Switch):
    """Collects traces while `afip_probe.trace(...)` is open. Read `traces` after generate(); `close()`
    stops recording (the traces stay)."""

    def __init__(self, num_layers: int, image_token_id: int, config: RecordConfig | None = None):
        self.config = config or RecordConfig()
        self.num_layers = num_layers
        self.image_token_id = image_token_id
        self.traces: list[SampleTrace] = []
        self._run: _Run | None = None
        self._work = Workspace()  # score rows and scratch space, reused across steps and runs
        self.hidden: Any = None  # `afip_probe.hooks.hidden.HiddenStates` when hidden states are recorded

    @property
    def active(self) -> bool:
        return self._run is not None

    @property
    def current_step(self) -> int | None:
        """The step of the forward pass running now (0: prefill), None outside a traced generate()."""
        return None if self._run is None else self._run.step

    def steps_since(self, first: int, tokens: list[int], b: int = 0) -> LiveSteps:
        """While generate() runs (from a streamer, once a token is chosen): the statistics of sample `b` for
        steps `first` to the newest, summarised now if they were staged (`_Block`). `tokens` are the tokens
        those steps chose (the newest one's log-probability is not filed until the next step starts).

        One call per burst of tokens costs about what one call per token does: a streamer that asks every
        few tokens keeps the batched summaries of plain tracing."""
        run = self._run
        if run is None or run.pending_logp is None:
            raise AfipError("steps_since() reads a running generate() (call it from a streamer)")
        self._flush()
        self._flush_block(run)
        n = run.step - first + 1
        if n != len(tokens) or n < 1:
            raise AfipError(f"steps {first}..{run.step} chose {n} tokens, not {len(tokens)}")
        heads = _since(run.raw.items["head"], first)
        head = torch.zeros((n, self.num_layers, len(HEAD_FIELDS), heads[0][2].shape[-1]))  # [S, L, F, H]
        for step, layers, t in heads:
            head[step - first, layers] = t[:, b].float().cpu()
        layer = torch.zeros((n, self.num_layers, len(LAYER_FIELDS)))  # [S, L, F]
        for step, layers, t in _since(run.raw.items["layer"], first):
            layer[step - first, layers] = t[:, b].float().cpu()
        arrays = {array_name("head", f): head[:, :, i].numpy() for i, f in enumerate(HEAD_FIELDS)}
        arrays.update({array_name("layer", f): layer[:, :, i].numpy() for i, f in enumerate(LAYER_FIELDS)})
        maps = _since(run.raw.items["maps"], first)
        if maps:  # head-mean image maps (levels maps and full), as stored: this sample's image slots
            slots = len(run.layouts[b].positions)
            stacked = torch.zeros((n, self.num_layers, slots), dtype=maps[0][2].dtype)  # [S, L, n]
            for step, layers, t in maps:
                stacked[step - first, layers] = t[:, b, :slots].cpu()
            arrays[array_name("maps")] = stacked.numpy()
        if self.hidden is not None:
            arrays.update(self.hidden.live(first, tokens, b))
        chosen = run.pending_logp[b, tokens[-1]].reshape(1)
        logprob = torch.cat([*(lp[b].reshape(1) for lp in run.logprob[first:]), chosen])  # [S]
        entropy = torch.stack([e[b] for e in run.entropy[first:]])  # [S]
        return LiveSteps(first, arrays, entropy.float().cpu().numpy(), logprob.float().cpu().numpy())

    # ------------------------------------------------------------------ run lifecycle
    def start_run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, layouts: list[ImageLayout],
                  masks: RunMasks | None = None) -> None:
        masks = masks if masks is not None else RunMasks(input_ids == self.image_token_id)
        self._run = _Run(input_ids, attention_mask, layouts, masks, self.num_layers)
        if self.hidden is not None:
            self.hidden.start_run(masks.prompt)

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

    def on_raw_row(self, layer: int, query: torch.Tensor, key: torch.Tensor, scaling: float | None,
                   attention_mask: torch.Tensor | None, softcap: float | None = None) -> None:
        """A layer's query [B, H, q, d], keys [B, H_kv, kv, d] (sequence positions only), mask and logit
        softcap. The last-row scores of all layers are computed into one buffer, masked where needed and
        summarised once per step."""
        if self._run is not None:
            self._run.raw_rows.append((layer, query[:, :, -1:, :], key, scaling, attention_mask, softcap))

    def decode_row(self, layer: int, query: torch.Tensor, key: torch.Tensor, scaling: float | None,
                   softcap: float | None) -> torch.Tensor:
        """A decoding step's unmasked last-row scores [B, H, kv] of `layer`, written into this step's buffer
        (one per key length, [L, B, H, kv]). The interceptor masks them in place, computes the layer's output
        from them and calls `decoded`; the step's summary then reads the buffer without scoring again."""
        b, h, kv = query.shape[0], query.shape[1], key.shape[2]
        slot = self._work.take(self._decode_buffer(kv), (self.num_layers, b, h, kv), query.device)[layer]
        return row_scores(query, key, scaling, out=slot, softcap=softcap)

    def _decode_buffer(self, kv: int) -> str:
        """The step buffer's name for key rows of length `kv`: one per key length within a step (sliding and
        full layers differ), the same names every step, so the storage is reused as the keys grow."""
        assert self._run is not None
        names = self._run.decode_buffers
        if kv not in names:
            names[kv] = f"decoded{len(names)}"
        return names[kv]

    def decoded(self, layer: int, heads: int, allowed: torch.Tensor) -> None:
        """`layer`'s row in the step buffer is masked and final (allowed [B, kv]: the keys the mask allows)."""
        if self._run is not None:
            self._run.decoded.append((layer, heads, allowed))

    def on_corrected(self, layer: int, scores: torch.Tensor, allowed: torch.Tensor) -> None:
        """The same row after score modifiers; kept as `SampleTrace.corrected` next to the raw row."""
        if self._run is not None:
            self._run.pending.append(("corrected", layer, scores, allowed))

    def _flush(self) -> None:
        """Summarise the step's rows (called when the next forward pass starts or the logits arrive)."""
        run = self._run
        if run is None or not (run.pending or run.raw_rows or run.decoded):
            return
        raw, pending, decoded = run.raw_rows, run.pending, run.decoded
        run.raw_rows, run.pending, run.decoded = [], [], []
        self._summarise(run, run.step, raw, pending)
        self._summarise_decoded(run, run.step, decoded)
        run.decode_buffers.clear()

    def _raw_stats(self, run: "_Run", step: int, layers: list[int], rows: torch.Tensor, allowed: torch.Tensor) -> None:
        """Statistics of one step's raw rows [L', B, H, kv] (masked, or left to `allowed` [B, kv]): now, or
        staged with the next steps' and summarised in one batch (`_Block`)."""
        kv = rows.shape[-1]
        view = run.masks.view(kv, step)
        if view.offset != 0 or kv < 2 or _Block.steps_for(rows) < _Block.MIN_STEPS:  # see _Block
            run.raw.add(step, layers, row_stats(rows, view.is_image, allowed, view.index, self._work,
                                                view.generated_start), self.config)
            return
        block = run.block
        if block is not None and not block.accepts(step, layers, rows):
            self._flush_block(run)
            block = None
        if block is None:
            block = run.block = _Block(self._work, step, layers, rows, _Block.steps_for(rows))
        block.stage(rows, allowed)
        if block.full:
            self._flush_block(run)

    def _flush_block(self, run: "_Run") -> None:
        """Summarise the staged steps in one `row_stats` call and file each step's statistics."""
        block, run.block = run.block, None
        if block is None or block.count == 0:
            return
        n = block.count
        view = run.masks.view(block.width, block.start)  # key 0 is position 0: one image index for every step
        # each staged row's own key is last: a generated key from step 1 on
        own = (torch.arange(block.start, block.start + n, device=block.rows.device) >= 1).view(n, 1, 1, 1)
        st = row_stats(block.rows[:n], view.is_image, block.allowed[:n], view.index, self._work,
                       view.generated_start, own)
        for i in range(n):
            run.raw.add(block.start + i, block.layers,
                        RowStats(st.head[i], st.layer[i], st.img_mean_probs[i], st.img_scores[i],
                                 None if st.image_var is None else st.image_var[i]), self.config)

    def _summarise_decoded(self, run: "_Run", step: int, decoded: list[tuple[int, int, torch.Tensor]]) -> None:
        """Statistics of the rows `decode_row` scored: one `row_stats` call per key length and mask."""
        groups: dict[tuple[int, int], list[tuple[int, int, torch.Tensor]]] = {}
        for item in decoded:
            groups.setdefault((item[2].shape[-1], id(item[2])), []).append(item)
        for (kv, _), items in groups.items():
            layers = [layer for layer, _, _ in items]
            heads, allowed = items[0][1], items[0][2]
            rows = self._work.take(self._decode_buffer(kv), (self.num_layers, allowed.shape[0], heads, kv),
                                   allowed.device)
            if layers == list(range(layers[0], layers[-1] + 1)):
                rows = rows[layers[0]: layers[-1] + 1]  # [L', B, H, kv], a view: normally every layer
            else:
                rows = rows[layers]
            self._raw_stats(run, step, layers, rows, allowed)

    def _summarise(self, run: "_Run", step: int, raw: list["_RawRow"],
                   pending: list[tuple[str, int, torch.Tensor, torch.Tensor]]) -> None:
        """Statistics of one step's rows: one `row_stats` call per kind (and mask) for all layers."""
        groups: dict[tuple[int, int, float | None], list[_RawRow]] = {}
        for item in raw:  # layers that share a key row, a mask and a softcap: normally all of them
            groups.setdefault((item[2].shape[2], id(item[4]), item[5]), []).append(item)
        for i, items in enumerate(groups.values()):
            mask, kv = items[0][4], items[0][2].shape[2]
            rows = self._score_rows(items, f"rows{i}")  # [L', B, H, kv]
            rows, allowed = mask_rows(rows, mask, run.masks.view(kv, step).is_image)
            self._raw_stats(run, step, [item[0] for item in items], rows, allowed)
        kinds: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
        for kind, layer, scores, allowed in pending:
            kinds.setdefault(kind, []).append((layer, scores, allowed))
        for kind, rows_of_kind in kinds.items():
            for kv in sorted({sc.shape[-1] for _, sc, _ in rows_of_kind}):
                same = [item for item in rows_of_kind if item[1].shape[-1] == kv]
                stacked = torch.stack([sc for _, sc, _ in same])  # [L', B, H, kv], masked
                allowed = torch.stack([a for _, _, a in same])  # [L', B, kv]
                view = run.masks.view(kv, step)
                st = row_stats(stacked, view.is_image, allowed, view.index, self._work, view.generated_start)
                target = run.corrected if kind == "corrected" else run.raw
                target.add(step, [layer for layer, _, _ in same], st, self.config, keep_scores=kind != "corrected")

    def _score_rows(self, items: list["_RawRow"], name: str) -> torch.Tensor:
        """The unmasked last-row scores (softcapped where the model caps them) of layers sharing a key row,
        in the reused buffer `name`."""
        _, q, key, _, _, _ = items[0]
        rows = self._work.take(name, (len(items), q.shape[0], q.shape[1], key.shape[2]), q.device)
        for j, (_, q, key, scaling, _, softcap) in enumerate(items):
            row_scores(q, key, scaling, out=rows[j], softcap=softcap)
        return rows

    def finish_run(self, sequences: torch.Tensor, eos_token_ids: list[int]) -> list[SampleTrace]:
        """Split the run's buffers into one `SampleTrace` per sample and append them to `traces`."""
        self._flush()
        if self._run is not None:
            self._flush_block(self._run)
        run = self._run
        self._run = None
        if run is None:
            return []
        prompt_len = run.input_ids.shape[1]
        generated = sequences[:, prompt_len:].cpu()
        steps = run.step + 1
        if run.pending_logp is not None:  # the last step's token is only in the output
            run.logprob.append(run.pending_logp.gather(-1, sequences[:, -1:].to(run.pending_logp.device)).squeeze(-1))
        if generated.shape[1] != steps or not run.raw.covers(steps):
            raise AfipError(
                f"recorded {steps} forward passes for {generated.shape[1]} generated tokens; beam search, "
                "assisted decoding and other multi-pass strategies cannot be traced (use greedy or sampling)"
            )

        head = run.raw.array("head", steps)  # [T, L, B, F, H]
        layer = run.raw.array("layer", steps)  # [T, L, B, F]
        maps = run.raw.array("maps", steps)  # [T, L, B, n] (levels maps and full)
        scores = run.raw.array("scores", steps)  # [T, L, B, H, n] (level full)
        c_head = run.corrected.array("head", steps)  # [T, L, B, F, H], rows after a corrector
        c_layer = run.corrected.array("layer", steps)  # [T, L, B, F]
        c_maps = run.corrected.array("maps", steps)  # [T, L, B, n]
        image_var = run.raw.array("image_var", steps)  # [T, L, B, H, I] (prompts of several images)
        c_image_var = run.corrected.array("image_var", steps)
        entropy = torch.stack(run.entropy, dim=1).cpu().numpy()  # [B, T]
        logprob = torch.stack(run.logprob, dim=1).cpu().numpy()  # [B, T]
        eos = set(eos_token_ids)
        lengths = [next((i + 1 for i, tok in enumerate(ids) if tok in eos), len(ids)) for ids in generated.tolist()]
        hidden = self.hidden.finish(generated, lengths) if self.hidden is not None else [{}] * len(lengths)
        out = []
        for b, layout in enumerate(run.layouts):
            ids = generated[b].tolist()
            length = lengths[b]
            n = len(layout.positions)
            trace = SampleTrace(
                prompt_ids=run.input_ids[b, run.pad[b]:].tolist(),
                generated_ids=ids[:length],
                layout=layout,
                head={f: np.ascontiguousarray(head[:length, :, b, i]) for i, f in enumerate(HEAD_FIELDS)},
                layer={f: np.ascontiguousarray(layer[:length, :, b, i]) for i, f in enumerate(LAYER_FIELDS)},
                token_entropy=entropy[b, :length].copy(),
                logprob=logprob[b, :length].copy(),
                # no copy when the batch is one sample: these arrays can be large at level full
                maps=None if maps is None else np.ascontiguousarray(maps[:length, :, b, :n]),
                scores=None if scores is None else np.ascontiguousarray(scores[:length, :, b, :, :n]),
                image_var=_per_image(image_var, length, b, layout),
                **hidden[b],
            )
            if c_head is not None and c_layer is not None:
                trace.corrected = RowArrays(
                    head={f: np.ascontiguousarray(c_head[:length, :, b, i]) for i, f in enumerate(HEAD_FIELDS)},
                    layer={f: np.ascontiguousarray(c_layer[:length, :, b, i]) for i, f in enumerate(LAYER_FIELDS)},
                    maps=None if c_maps is None else np.ascontiguousarray(c_maps[:length, :, b, :n]),
                    image_var=_per_image(c_image_var, length, b, layout),
                )
            out.append(trace)
        self.traces.extend(out)
        return out
