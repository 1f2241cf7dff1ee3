"""The attention interceptor: a custom attention function registered with transformers (DESIGN §3).

`trace(model)` registers the function ``afip_probe`` with `AttentionInterface` (and `sdpa_mask`
under the same name with `AttentionMaskInterface`, otherwise the mask is None), switches the
decoder's attention implementation to it, and restores everything on exit, also after an exception.
The function runs SDPA for the output and, for the last query row of every forward pass, computes
the pre-softmax score row B = q·Kᵀ·scaling (+mask) of all heads (GQA keys shared, never copied),
which feeds the recorder and, when given, score modifiers (the AFIP corrector). A row a modifier
changed gets its output from the modified scores; in a decoding step (one query row) SDPA is then
not run at all. Rows nobody changed keep SDPA's output exactly.

Keys are mapped to sequence positions per layer (`RunMasks.view`): a sliding-window or chunked
layer's cache hands over the last keys only (key j is position offset + j), a static cache its whole
preallocated length (the empty slots are left out). Layers that cap their logits (``softcap``:
Gemma 2, PaliGemma 2) are scored capped and computed with the eager math, which SDPA cannot do.

Example:
    >>> import afip_probe
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava()
    >>> inputs = adapter_for(model, processor).build_inputs(tiny.random_images(2), "describe")
    >>> with afip_probe.trace(model, processor, level="maps") as rec:
    ...     out = model.generate(**inputs, max_new_tokens=4)
    >>> len(rec.traces), rec.traces[0].maps.shape        # [T, L, n]
    (2, (4, 2, 16))
    >>> model.config.text_config._attn_implementation   # restored
    'sdpa'
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ..errors import AfipError
from ..models import ModelAdapter, adapter_for
from .hidden import recording_hidden, resolve_hidden
from .recorder import RecordConfig, Recorder, Switch
from .rowstats import ImageIndex, KeyView, RunMasks, allowed_keys, apply_row_mask, capped, row_scores, text_keys

IMPLEMENTATION = "afip_probe"


class ScoreModifier(Protocol):
    """Changes a layer's last-row pre-softmax scores (e.g. the AFIP corrector, DESIGN §7)."""

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


_sdpa = sdpa_attention_forward  # the model's own attention, for outputs nobody changed


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

    def start_run(self, masks: RunMasks) -> None:
        self.masks = masks
        self.step = -1
        self.run = next(_RUN_IDS)
        # modifiers name decoder layers (in a hybrid decoder, the attention layers among them); the session
        # indexes attention layers 0..n-1
        position = {number: i for i, number in enumerate(self.adapter.decoder_layers)}
        depth = self.adapter.decoder_depth
        every = frozenset(position)
        wanted = frozenset().union(*(
            frozenset(m.layer_set(depth)) if hasattr(m, "layer_set") else every for m in self.modifiers))
        self.acting = frozenset(position[n] for n in wanted if n in position)

    def attention(self, layer: int, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        softcap = kwargs.get("softcap")
        own = _sdpa if softcap is None else _softcapped  # the model's own attention (SDPA cannot softcap)
        if not self.in_generate:
            return own(module, query, key, value, attention_mask, **kwargs)
        assert self.masks is not None
        # the row's keys as sequence positions: a static cache's empty slots are left out; a windowed or
        # chunked cache's keys start at view.offset
        kv = self.masks.visible_keys(key.shape[2], self.step)
        row_key, row_value = (key, value) if kv == key.shape[2] else (key[:, :, :kv], value[:, :, :kv])
        scaling = kwargs.get("scaling")
        if not self.modifiers:
            if self.recorder is not None and not self.exact and query.shape[2] == 1:
                return self._decode(layer, query, row_key, row_value, attention_mask, scaling, softcap, kv)
            if self.recorder is not None:  # masked and summarised for all layers at once, per step
                self.recorder.on_raw_row(layer, query, row_key, scaling, attention_mask, softcap)
            return own(module, query, key, value, attention_mask, **kwargs)
        if self.recorder is None and layer not in self.acting:
            return own(module, query, key, value, attention_mask, **kwargs)
        view = self.masks.view(kv, self.step)
        mask = self._row_mask(attention_mask, view)
        scores = mask.apply_(row_scores(query, row_key, scaling, softcap=softcap), attention_mask)  # [B, H, kv]
        if self.recorder is not None:
            self.recorder.on_scores(layer, scores, mask.allowed)
        context = RowContext(step=self.step, is_image=view.is_image, allowed=mask.allowed, image_index=view.index,
                             num_layers=self.adapter.decoder_depth, run=self.run, text=mask.text)
        modified = scores
        number = self.adapter.decoder_layers[layer]
        for modifier in self.modifiers:
            new = modifier.modify(number, modified, context)
            modified = modified if new is None else new
        if self.recorder is not None:
            self.recorder.on_corrected(layer, modified, mask.allowed)
        if modified is scores:  # unchanged: the model's own attention, exactly
            return own(module, query, key, value, attention_mask, **kwargs)
        row = _row_output(modified, row_value).to(query.dtype)  # [B, H, d]
        if query.shape[2] == 1:  # a decoding step: this row is the whole output, SDPA is not needed
            return row[:, None], None
        output, weights = own(module, query, key, value, attention_mask, **kwargs)  # [B, q, H, d], a new tensor
        output[:, -1] = row
        return output, weights

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


def _softcapped(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, scaling: float | None = None, softcap: float | None = None,
                dropout: float = 0.0, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention with logit softcapping, the math of the model's eager attention (Gemma 2, PaliGemma 2):
    softmax(softcap · tanh(q·Kᵀ·scaling / softcap) + mask) · V. query [B, H, q, d], key/value
    [B, H_kv, kv, d]; returns ([B, q, H, d], weights [B, H, q, kv])."""
    b, h, q, d = query.shape
    h_kv, kv = key.shape[1], key.shape[2]
    scale = scaling if scaling is not None else d**-0.5
    k = key.repeat_interleave(h // h_kv, dim=1) if h_kv != h else key
    v = value.repeat_interleave(h // h_kv, dim=1) if h_kv != h else value
    weights = capped(torch.matmul(query, k.transpose(2, 3)) * scale, softcap)  # [B, H, q, kv]
    if attention_mask is None:  # SDPA's is_causal: query i sees keys up to kv - q + i
        if q > 1:
            weights = weights.masked_fill(torch.ones(q, kv, dtype=torch.bool, device=query.device)
                                          .triu(kv - q + 1), float("-inf"))
    elif attention_mask.dtype == torch.bool:
        weights = weights.masked_fill(~attention_mask[:, :, :, :kv], float("-inf"))
    else:
        weights = weights + attention_mask[:, :, :, :kv]
    weights = torch.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    if dropout and module.training:
        weights = torch.nn.functional.dropout(weights, p=dropout, training=True)
    return torch.matmul(weights, v).transpose(1, 2).contiguous(), weights


_SESSIONS: list[_Session] = []
_RUN_IDS = itertools.count(1)


def _attention_function(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """The function registered as ``afip_probe``: SDPA, plus the last-row work of the active session."""
    session = _SESSIONS[-1] if _SESSIONS else None
    layer = session.layer_of.get(id(module)) if session is not None else None
    if layer is None:  # vision tower, another model, or no active session
        return _sdpa(module, query, key, value, attention_mask, **kwargs)
    return session.attention(layer, module, query, key, value, attention_mask, **kwargs)


def register() -> None:
    """Register ``afip_probe`` with transformers' attention and mask interfaces (idempotent)."""
    AttentionInterface.register(IMPLEMENTATION, _attention_function)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)


def _all_configs(model: Any) -> list[Any]:
    seen: dict[int, Any] = {}
    stack = [model.config] + [m.config for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "to_dict")]
    while stack:
        cfg = stack.pop()
        if id(cfg) in seen:
            continue
        seen[id(cfg)] = cfg
        for key in getattr(cfg, "sub_configs", {}) or {}:
            sub = getattr(cfg, key, None)
            if sub is not None:
                stack.append(sub)
    return list(seen.values())


@contextlib.contextmanager
def _installed(model: Any, session: _Session) -> Iterator[None]:
    """Switch the decoder to the interceptor, hook generate/logits, and undo all of it on exit."""
    register()
    adapter = session.adapter
    configs = _all_configs(model)
    saved = [(cfg, cfg.__dict__.get("_attn_implementation_internal")) for cfg in configs]
    handles: list[Any] = []
    had_generate = "generate" in model.__dict__
    old_generate = model.__dict__.get("generate")
    try:
        key = adapter.text_config_key
        if key and key in (getattr(model.config, "sub_configs", {}) or {}):
            model.set_attn_implementation({key: IMPLEMENTATION})
        else:
            model.set_attn_implementation(IMPLEMENTATION)
        if any(getattr(m, "config", None) is None or m.config._attn_implementation != IMPLEMENTATION
               for m in adapter.attention_modules if hasattr(m, "config")):
            raise AfipError(f"could not switch {type(model).__name__}'s decoder attention to the interceptor")
        handles.append(model.register_forward_pre_hook(functools.partial(_pre_forward, session), with_kwargs=True))
        head = model.get_output_embeddings()
        if head is not None:  # a recorder may join later (trace inside correct)
            handles.append(head.register_forward_hook(functools.partial(_on_logits, session)))
        model.generate = functools.partial(_generate, session, model.generate)
        _SESSIONS.append(session)
        yield
    finally:
        if session in _SESSIONS:
            _SESSIONS.remove(session)
        for h in handles:
            h.remove()
        if had_generate:
            model.generate = old_generate
        else:
            model.__dict__.pop("generate", None)
        for cfg, value in saved:
            cfg._attn_implementation_internal = value


def _on_logits(session: _Session, _module: Any, _inputs: Any, out: torch.Tensor) -> None:
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
    session.start_run(RunMasks(input_ids == session.adapter.image_token_id))
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

    Returns the `Recorder`, already recording; after each generate() call its `traces` gain one
    `SampleTrace` per sample. Use it in a ``with`` block, or call ``rec.close()`` when done.
    `modifiers` (e.g. the AFIP corrector) change the scores before the output is computed; the
    recorder always sees the unmodified row.

    `exact=True` keeps every layer's output the model's own SDPA output, bit for bit, and scores the
    last row a second time for the record. `exact=False` reads each decoding step's keys once: the
    recorded score row is also the one the output is computed from (softmax(B)·V), so the record is
    exactly the attention that produced the token, and the outputs differ from SDPA's by float rounding
    (README: "What tracing and correcting cost"). Prefill always runs SDPA.

    `hidden` also keeps decoder hidden states (opt-in): indices 0..L of ``output_hidden_states`` or a spec
    (``"all"``, ``"last"``, ``"2-"``); see `afip_probe.hooks.hidden`.

    Example:
        >>> from afip_probe.models import tiny, adapter_for
        >>> model, processor = tiny.tiny_llava()
        >>> rec = trace(model, processor)          # no `with`: a notebook cell
        >>> _ = model.generate(**adapter_for(model, processor).build_inputs(tiny.random_images(1), "hi"),
        ...                    max_new_tokens=2)
        >>> rec.close(); len(rec.traces), model.config.text_config._attn_implementation
        (1, 'sdpa')
    """
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
