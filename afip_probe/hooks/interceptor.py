"""The attention interceptor: the model's own attention function, observed (docs/design.md §3).

`trace(model)` leaves the model's attention implementation as it was loaded (eager, sdpa, flex_attention,
flash_attention_2/3, or any function registered with transformers' `AttentionInterface`) and every mask it
builds. While a session is open, `AttentionInterface.get_interface` (where every transformers model resolves
its implementation for each forward call) hands the decoder's attention layers a thin dispatcher around the
function it resolved: the function still computes each layer's output, with the model's own mask, and the
dispatcher computes the last query row's pre-softmax scores B = q·Kᵀ·scaling on the side from the same q
and K, masked with the last row of that mask (an additive or boolean 4D mask as it is; a flash kernel's 2D
padding mask or none, with its ``sliding_window``, and a flex BlockMask are turned into the row's allowed
keys). Everything is restored on exit, also after an exception.

The rows feed the recorder and, when given, score modifiers (the AFIP corrector). Rows nobody changed keep
the model's own output bit for bit, so traced generation writes the same tokens and logits as plain
generation with the same implementation and dtype. A row a modifier changed gets its output from the
modified scores with afip-probe's arithmetic, softmax(B̃)·V in float32 (in a decoding step the model's own
function is then not run for that layer). `trace(exact=False)` (single-read) computes decoding steps'
outputs that way too, from the recorded row: faster, and equal to the model's own outputs up to float
rounding only.

Keys are mapped to sequence positions per layer (`RunMasks.view`): a sliding-window or chunked layer's
cache hands over the last keys only (key j is position offset + j), a static cache its whole
preallocated length (the empty slots are left out). Layers that cap their logits (``softcap``: Gemma 2,
PaliGemma 2) are scored capped, as the model's eager attention caps them.

Example:
    >>> import afip_probe
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava()
    >>> inputs = adapter_for(model, processor).build_inputs(tiny.random_images(2), "describe")
    >>> with afip_probe.trace(model, processor, level="maps") as rec:
    ...     out = model.generate(**inputs, max_new_tokens=4)
    ...     model.config.text_config._attn_implementation      # the model's own, while tracing
    'sdpa'
    >>> len(rec.traces), rec.traces[0].maps.shape        # [T, L, n]
    (2, (4, 2, 16))
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

import torch
from transformers import AttentionInterface

from ..errors import AfipError
from ..models import LoadedModel, ModelAdapter, adapter_for
from ..records import resolve_hidden
from .hidden import recording_hidden
from .recorder import RecordConfig, Recorder, Switch
from .rowstats import ImageIndex, KeyView, RunMasks, allowed_keys, apply_row_mask, row_scores, text_keys


class ScoreModifier(Protocol):
    """Changes a layer's last-row pre-softmax scores (e.g. the AFIP corrector, docs/design.md §7)."""

    def modify(self, layer: int, scores: torch.Tensor, context: "RowContext") -> torch.Tensor | None:
        """Return modified scores [B, H, kv] for decoder layer `layer`, or None to leave the row alone.

        A modifier may also define ``layer_set(num_layers)``, the decoder layers it can act on; the others
        then run the model's attention untouched (no score row is computed for them unless traced). In a
        hybrid decoder (LFM2-VL) layer numbers are decoder layers: only its attention layers are ever asked.
        """


@dataclass
class RowContext:
    """What a modifier may read about the current row."""

    step: int  # 0 = prefill
    is_image: torch.Tensor  # [B, kv] bool
    allowed: torch.Tensor  # [B, kv] bool, keys the mask lets the query see
    image_index: ImageIndex  # gather index of each sample's image keys, [B, n_max]
    num_layers: int  # decoder layers (in a hybrid decoder, attention or not)
    run: int  # unique per generate() call (process-wide); a modifier resets its state when it changes
    text: torch.Tensor | None = None  # [B, kv] allowed non-image keys, the query's own key excluded


def last_row_scores(
    query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None, scaling: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-softmax scores of the last query row and the keys it may see.

    query [B, H, q, d], key [B, H_kv, kv, d], attention_mask None / bool (True = attend) / additive
    float [B, 1|H, q, kv]. Returns scores [B, H, kv] (float32, -inf where masked) and allowed [B, kv].
    """
    return apply_row_mask(row_scores(query, key, scaling), attention_mask)


class _Session:
    """One active `trace`/`correct` context: which modules to act on and what to do with their rows."""

    def __init__(self, adapter: ModelAdapter, recorder: Recorder | None, modifiers: Sequence[ScoreModifier],
                 exact: bool = True):
        self.adapter = adapter
        self.exact = exact  # False: decoding steps of traced layers take their output from the score row
        self.recorder = recorder
        self.modifiers = list(modifiers)
        self.layer_of = {id(m): i for i, m in enumerate(adapter.attention_modules)}
        self.step = -1
        self.run = 0
        self.masks: RunMasks | None = None  # image-key masks of the current generate() call
        self._mask_cache: tuple[tuple[int, int, int, int], torch.Tensor | None, _RowMask] | None = None
        self.acting: frozenset[int] = frozenset()  # layers some modifier may change (set per generate call)
        self.in_generate = False
        self.seen: set[int] = set()  # traced layers whose attention ran through the dispatcher at prefill
        self._std_mask: tuple[tuple[Any, ...], torch.Tensor | None] | None = None

    def start_run(self, masks: RunMasks) -> None:
        self.masks = masks
        self.step = -1
        self.seen = set()
        self.run = next(_RUN_IDS)
        # modifiers name decoder layers (in a hybrid decoder, the attention layers among them); the session
        # indexes attention layers 0..n-1
        position = {number: i for i, number in enumerate(self.adapter.decoder_layers)}
        depth = self.adapter.decoder_depth
        every = frozenset(position)
        wanted = frozenset().union(*(
            frozenset(m.layer_set(depth)) if hasattr(m, "layer_set") else every for m in self.modifiers))
        self.acting = frozenset(position[n] for n in wanted if n in position)

    def attention(self, layer: int, own: Any, module: Any, query: torch.Tensor, key: torch.Tensor,
                  value: torch.Tensor, attention_mask: Any, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        """Decoder layer `layer`'s attention: `own` (the function the model resolved) computes the output,
        exactly as without afip-probe, unless a modifier changes the last row or single-read is on."""
        if not self.in_generate:
            return own(module, query, key, value, attention_mask, **kwargs)
        assert self.masks is not None
        if self.step == 0:
            self.seen.add(layer)
        # the row's keys as sequence positions: a static cache's empty slots are left out; a windowed or
        # chunked cache's keys start at view.offset
        kv = self.masks.visible_keys(key.shape[2], self.step)
        row_key, row_value = (key, value) if kv == key.shape[2] else (key[:, :, :kv], value[:, :, :kv])
        scaling, softcap = kwargs.get("scaling"), kwargs.get("softcap")
        mask = self._row_attention_mask(attention_mask, kv, query.shape[2], kwargs.get("sliding_window"))
        if not self.modifiers:
            if self.recorder is not None and not self.exact and query.shape[2] == 1:
                return self._decode(layer, query, row_key, row_value, mask, scaling, softcap, kv)
            if self.recorder is not None:  # masked and summarised for all layers at once, per step
                self.recorder.on_raw_row(layer, query, row_key, scaling, mask, softcap)
            return own(module, query, key, value, attention_mask, **kwargs)
        if self.recorder is None and layer not in self.acting:
            return own(module, query, key, value, attention_mask, **kwargs)
        view = self.masks.view(kv, self.step)
        rows = self._row_mask(mask, view)
        scores = rows.apply_(row_scores(query, row_key, scaling, softcap=softcap), mask)  # [B, H, kv]
        if self.recorder is not None:
            self.recorder.on_scores(layer, scores, rows.allowed)
        context = RowContext(step=self.step, is_image=view.is_image, allowed=rows.allowed, image_index=view.index,
                             num_layers=self.adapter.decoder_depth, run=self.run, text=rows.text)
        modified = scores
        number = self.adapter.decoder_layers[layer]
        for modifier in self.modifiers:
            new = modifier.modify(number, modified, context)
            modified = modified if new is None else new
        if self.recorder is not None:
            self.recorder.on_corrected(layer, modified, rows.allowed)
        if modified is scores:  # unchanged: the model's own attention, exactly
            return own(module, query, key, value, attention_mask, **kwargs)
        row = _row_output(modified, row_value).to(query.dtype)  # [B, H, d], afip-probe's arithmetic
        if query.shape[2] == 1:  # a decoding step: this row is the whole output, the model's function is not run
            return row[:, None], None
        output, weights = own(module, query, key, value, attention_mask, **kwargs)  # [B, q, H, d], a new tensor
        output[:, -1] = row
        return output, weights

    def _row_attention_mask(self, attention_mask: Any, kv: int, q_len: int, window: int | None) -> torch.Tensor | None:
        """The mask the last row is scored with: a 4D mask (boolean or additive) as the model built it; else
        (a flash kernel's 2D padding mask or none, a flex BlockMask) the last row's allowed keys as a boolean
        [B, 1, 1, kv] mask, with the ``sliding_window`` a flash kernel applies itself. Built once per step and
        mask, so the layers that share a mask share the result."""
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4:
            return attention_mask
        if attention_mask is None and (window is None or kv <= window):  # a causal kernel's last row sees every key
            return None
        cache_key = (self.run, self.step, id(attention_mask), kv, q_len, window)
        if self._std_mask is not None and self._std_mask[0] == cache_key:
            return self._std_mask[1]
        assert self.masks is not None
        batch, device = self.masks.prompt.shape[0], self.masks.prompt.device
        allowed = last_row_allowed(attention_mask, batch, kv, q_len, device)  # [B, kv] or None (all)
        if window is not None and kv > window and not _is_block_mask(attention_mask):
            allowed = torch.ones(batch, kv, dtype=torch.bool, device=device) if allowed is None else allowed.clone()
            allowed[:, : kv - window] = False  # the last row sees its own key and the window - 1 before it
        mask = None if allowed is None else allowed[:, None, None, :]
        self._std_mask = (cache_key, mask)
        return mask

    def _decode(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, scaling: float | None, softcap: float | None,
                kv: int) -> tuple[torch.Tensor, None]:
        """A decoding step read once (`trace(exact=False)`): the score row the recorder keeps is also the one
        the output is computed from, softmax(B)·V, instead of SDPA reading the keys a second time."""
        assert self.recorder is not None and self.masks is not None
        mask = self._row_mask(attention_mask, self.masks.view(kv, self.step))
        scores = self.recorder.decode_row(layer, query, key, scaling, softcap)  # [B, H, kv], in the step buffer
        mask.apply_(scores, attention_mask)
        self.recorder.decoded(layer, scores.shape[1], mask.allowed)
        return _row_output(scores, value).to(query.dtype)[:, None], None

    def _row_mask(self, attention_mask: torch.Tensor | None, view: KeyView) -> "_RowMask":
        """The last-row masks for this step and key row (computed once per step and cache kind, not per layer)."""
        kv = view.is_image.shape[1]
        cached = self._mask_cache
        if cached is None or cached[0] != (self.run, self.step, kv, view.offset) or cached[1] is not attention_mask:
            cached = self._mask_cache = ((self.run, self.step, kv, view.offset), attention_mask,
                                         _RowMask.build(attention_mask, view.is_image))
        return cached[2]


@dataclass
class _RowMask:
    allowed: torch.Tensor  # [B, kv] keys the query may see
    hidden: torch.Tensor | None  # [B, 1, kv] keys it may not (None: all visible)
    text: torch.Tensor  # [B, kv] allowed non-image keys, the query's own key excluded

    def apply_(self, scores: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Mask last-row scores [B, H, kv] in place (-inf where hidden; an additive mask's biases added) and
        return them."""
        if attention_mask is not None and attention_mask.dtype != torch.bool:  # additive: may carry biases
            scores.add_(attention_mask[:, :, -1, : scores.shape[-1]].float())
            return scores.masked_fill_(~self.allowed[:, None, :], float("-inf"))
        return scores if self.hidden is None else scores.masked_fill_(self.hidden, float("-inf"))

    @staticmethod
    def build(attention_mask: torch.Tensor | None, is_image: torch.Tensor) -> "_RowMask":
        b, kv = is_image.shape
        allowed = allowed_keys(attention_mask, b, kv, is_image.device)
        hidden = None if bool(allowed.all()) else ~allowed[:, None, :]
        return _RowMask(allowed=allowed, hidden=hidden, text=text_keys(allowed, is_image))


def _row_output(scores: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Attention output of one row from (modified) scores [B, H, kv] and values [B, H_kv, kv, d] -> [B, H, d]."""
    b, h, kv = scores.shape
    h_kv, d = value.shape[1], value.shape[-1]
    probs = torch.softmax(scores, dim=-1).reshape(b, h_kv, h // h_kv, kv)
    return torch.matmul(probs, value.float()).reshape(b, h, d)


def _is_block_mask(mask: Any) -> bool:
    return type(mask).__name__ == "BlockMask"


def last_row_allowed(attention_mask: Any, batch: int, kv: int, q_len: int, device: torch.device
                     ) -> torch.Tensor | None:
    """[B, kv] bool: the keys the last query row may see under a mask that is not a 4D tensor: None (all of
    them, as a causal kernel's last row), a 2D padding mask [B, ≥kv] (a flash kernel's: its last kv columns),
    or a flex ``BlockMask`` (its mask function evaluated on the last row)."""
    if attention_mask is None:
        return None
    if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
        if attention_mask.shape[1] < kv:
            raise AfipError(f"a 2D attention mask of {attention_mask.shape[1]} keys for a row of {kv} keys")
        return attention_mask[:, -kv:].to(torch.bool)
    if _is_block_mask(attention_mask):
        b = torch.arange(batch, device=device)[:, None]
        j = torch.arange(kv, device=device)[None, :]
        zero = torch.zeros((), dtype=torch.long, device=device)
        return attention_mask.mask_mod(b, zero, zero + (q_len - 1), j).expand(batch, kv).to(torch.bool)
    raise AfipError(f"cannot read the last row of an attention mask of type {type(attention_mask).__name__} "
                    f"(shape {getattr(attention_mask, 'shape', None)})")


_SESSIONS: list[_Session] = []
_RUN_IDS = itertools.count(1)
#: id(attention module) -> (session, traced layer index), for every open session's decoder layers
_LAYERS: dict[int, tuple[_Session, int]] = {}
_DISPATCHERS: dict[Any, Any] = {}  # attention function -> its dispatcher
_get_interface = AttentionInterface.get_interface  # transformers' own


def _dispatcher(own: Any) -> Any:
    """The function handed to the model instead of `own` while a session is open: `own` itself for every
    module that is not a traced decoder layer (the vision tower, other models), the session's work otherwise."""
    dispatch = _DISPATCHERS.get(own)
    if dispatch is None:
        @functools.wraps(own)
        def dispatch(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
                     **kwargs: Any) -> tuple[torch.Tensor, Any]:
            found = _LAYERS.get(id(module))
            if found is None:
                return own(module, query, key, value, attention_mask, **kwargs)
            return found[0].attention(found[1], own, module, query, key, value, attention_mask, **kwargs)

        _DISPATCHERS[own] = dispatch
    return dispatch


def _intercepting_get_interface(self: Any, attn_implementation: str, default: Any) -> Any:
    """`AttentionInterface.get_interface` while a session is open: what transformers resolves, dispatched."""
    return _dispatcher(_get_interface(self, attn_implementation, default))


def is_intercepted(model: Any) -> bool:
    """Whether a `trace` or `correct` session is open on `model`."""
    return _active_session(model) is not None


@contextlib.contextmanager
def _installed(model: Any, session: _Session) -> Iterator[None]:
    """Observe the decoder's attention, hook generate/logits, and undo all of it on exit."""
    adapter = session.adapter
    handles: list[Any] = []
    had_generate = "generate" in model.__dict__
    old_generate = model.__dict__.get("generate")
    try:
        missing = [m for m in adapter.attention_modules if id(m) in _LAYERS]
        if missing:
            raise AfipError(f"{type(model).__name__}'s attention layers are already traced by another session")
        if not _SESSIONS:
            AttentionInterface.get_interface = _intercepting_get_interface
        _SESSIONS.append(session)
        _LAYERS.update({id(m): (session, i) for i, m in enumerate(adapter.attention_modules)})
        handles.append(model.register_forward_pre_hook(functools.partial(_pre_forward, session), with_kwargs=True))
        head = model.get_output_embeddings()
        if head is not None:  # a recorder may join later (trace inside correct)
            handles.append(head.register_forward_hook(functools.partial(_on_logits, session)))
        model.generate = functools.partial(_generate, session, model.generate)
        yield
    finally:
        for m in adapter.attention_modules:
            if _LAYERS.get(id(m), (None,))[0] is session:
                del _LAYERS[id(m)]
        if session in _SESSIONS:
            _SESSIONS.remove(session)
        if not _SESSIONS:
            AttentionInterface.get_interface = _get_interface
        for h in handles:
            h.remove()
        if had_generate:
            model.generate = old_generate
        else:
            model.__dict__.pop("generate", None)


def _on_logits(session: _Session, _module: Any, _inputs: Any, out: torch.Tensor) -> None:
    if session.in_generate and session.step == 0 and len(session.seen) != session.adapter.num_layers:
        missed = sorted(set(range(session.adapter.num_layers)) - session.seen)
        raise AfipError(
            f"the attention of decoder layers {[session.adapter.decoder_layers[i] for i in missed]} of "
            f"{type(session.adapter.model).__name__} did not go through transformers' AttentionInterface."
            "get_interface, where afip-probe observes it: this architecture resolves its attention function "
            "another way and cannot be traced")
    if session.recorder is not None:
        session.recorder.on_logits(out)


def _pre_forward(session: _Session, _module: Any, args: tuple, kwargs: dict) -> None:
    if not session.in_generate:
        return
    session.step += 1
    if session.recorder is not None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        session.recorder.begin_step(ids)


def _generate(session: _Session, original: Any, *args: Any, **kwargs: Any) -> Any:
    """model.generate while a session is active: sets up the run, then splits its records per sample."""
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    if input_ids is None:
        raise AfipError("tracing needs input_ids with image tokens (inputs_embeds-only generation is not supported)")
    gen_cfg = kwargs.get("generation_config") or session.adapter.model.generation_config
    beams = kwargs.get("num_beams", getattr(gen_cfg, "num_beams", 1)) or 1
    if beams > 1 or (kwargs.get("num_return_sequences") or 1) > 1:
        raise AfipError("tracing supports greedy and sampling with one sequence per prompt (num_beams=1)")
    inputs = dict(kwargs, input_ids=input_ids)
    layouts = session.adapter.layouts(inputs)
    several = any(layout.num_images > 1 for layout in layouts)  # per-image VAR for prompts of several images
    session.start_run(RunMasks(input_ids == session.adapter.image_token_id,
                               [layout.image_of_slots() for layout in layouts] if several else None))
    if session.recorder is not None:
        session.recorder.start_run(input_ids, kwargs.get("attention_mask"), layouts, session.masks)
    session.in_generate = True
    try:
        out = original(*args, **kwargs)
    except BaseException:
        if session.recorder is not None:
            session.recorder.abort_run()
        raise
    finally:
        session.in_generate = False
    if session.recorder is not None:
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        eos = gen_cfg.eos_token_id if gen_cfg is not None else None
        eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        session.recorder.finish_run(sequences, eos_ids)
    return out


class Intervention(Switch):
    """Score modifiers switched on for one model: active from creation until `close()` (or the end of
    a ``with`` block), so it works in a notebook cell without ``with`` as well."""

    def __init__(self, context: contextlib.AbstractContextManager[Any]):
        self.open(context)


def _unpack(model: Any, processor: Any, adapter: ModelAdapter | None) -> tuple[Any, Any, ModelAdapter | None]:
    """(module, processor, adapter) from a `LoadedModel` (``afip_probe.load(...)``) or the module itself."""
    if isinstance(model, LoadedModel):
        return model.model, processor if processor is not None else model.processor, adapter or model.adapter
    return model, processor, adapter


def trace(
    model: Any,
    processor: Any = None,
    level: str = "stats",
    array_dtype: str = "float16",
    modifiers: Sequence[ScoreModifier] = (),
    adapter: ModelAdapter | None = None,
    exact: bool = True,
    hidden: str | Sequence[int] | None = None,
) -> Recorder:
    """Record last-row attention of every decoder layer during `model.generate()`.

    `model` is what `afip_probe.load` returns, or a transformers model with its `processor`.
    Returns the `Recorder`, already recording; after each generate() call its `traces` gain one
    `SampleTrace` per sample. Use it in a ``with`` block, or call ``rec.close()`` when done.
    `modifiers` (e.g. the AFIP corrector) change the scores before the output is computed; the
    recorder always sees the unmodified row.

    The model keeps its own attention implementation (eager, sdpa, flex_attention, flash_attention_2, ...):
    with `exact=True` (the default) every layer's output is that implementation's, bit for bit, and the last
    row is scored a second time for the record. `exact=False` (single-read) reads each decoding step's keys
    once: the recorded score row is also the one the output is computed from, with afip-probe's arithmetic
    (softmax(B)·V in float32), so the record is exactly the attention that produced the token and the
    outputs differ from the model's own by float rounding (docs/benchmarks.md: "Single-read output drift").
    Prefill always runs the model's own function. Rows a modifier changes get their output from afip-probe's
    arithmetic too.

    `hidden` also keeps decoder hidden states (opt-in): indices 0..L of ``output_hidden_states`` or a spec
    (``"all"``, ``"last"``, ``"2-"``); see `afip_probe.hooks.hidden`.

    Example:
        >>> from afip_probe.models import tiny, adapter_for
        >>> model, processor = tiny.tiny_llava()
        >>> rec = trace(model, processor)          # no `with`: a notebook cell
        >>> _ = model.generate(**adapter_for(model, processor).build_inputs(tiny.random_images(1), "hi"),
        ...                    max_new_tokens=2)
        >>> rec.close(); len(rec.traces), is_intercepted(model)
        (1, False)
    """
    model, processor, adapter = _unpack(model, processor, adapter)
    adapter = adapter or adapter_for(model, processor)
    config = RecordConfig(level, array_dtype, resolve_hidden(hidden, adapter.decoder_depth))
    recorder = Recorder(adapter.num_layers, adapter.image_token_id, config)
    recorder.open(_tracing(model, adapter, recorder, modifiers, exact))
    return recorder


@contextlib.contextmanager
def _tracing(model: Any, adapter: ModelAdapter, recorder: Recorder,
             modifiers: Sequence[ScoreModifier], exact: bool = True) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        if recorder.config.hidden:
            stack.enter_context(recording_hidden(adapter, recorder))
        active = _active_session(model)
        if active is not None:  # inside `correct(model, ...)`: record in that session
            if active.recorder is not None:
                raise AfipError("this model is already being traced; nest trace() at most once")
            with _joined(active, modifiers, recorder):
                yield
            return
        with _installed(model, _Session(adapter, recorder, modifiers, exact)):
            yield


def intercept(model: Any, modifiers: Sequence[ScoreModifier], processor: Any = None,
              adapter: ModelAdapter | None = None) -> Intervention:
    """Apply score modifiers during `model.generate()` without recording, until the returned
    `Intervention` is closed (or its ``with`` block ends).

    Inside an active `trace(model)` the modifiers join that session, so the trace records both the
    unmodified rows and the corrected ones (`SampleTrace.corrected`).
    """
    model, processor, adapter = _unpack(model, processor, adapter)
    return Intervention(_intercepting(model, modifiers, processor, adapter))


@contextlib.contextmanager
def _intercepting(model: Any, modifiers: Sequence[ScoreModifier], processor: Any,
                  adapter: ModelAdapter | None) -> Iterator[None]:
    active = _active_session(model)
    if active is not None:
        with _joined(active, modifiers, None):
            yield
        return
    adapter = adapter or adapter_for(model, processor)
    with _installed(model, _Session(adapter, None, modifiers)):
        yield


def _active_session(model: Any) -> _Session | None:
    return next((s for s in reversed(_SESSIONS) if s.adapter.model is model), None)


@contextlib.contextmanager
def _joined(session: _Session, modifiers: Sequence[ScoreModifier], recorder: Recorder | None) -> Iterator[None]:
    """Add modifiers (and a recorder) to an active session for the duration of a nested context."""
    if session.in_generate:
        raise AfipError("cannot change tracing or correction while generate() runs")
    before = list(session.modifiers)
    session.modifiers.extend(modifiers)
    if recorder is not None:
        session.recorder = recorder
    try:
        yield
    finally:
        session.modifiers = before
        if recorder is not None:
            session.recorder = None
