"""Decoder hidden states, recorded opt-in (``trace(..., hidden=[...])``) with forward hooks on the decoder.

Indices follow ``output_hidden_states``: 0 is the input of decoder layer 0 (the embeddings as the decoder
sees them), i the input of layer i, and L (the decoder's depth) its final, normed output. A pre-hook on
each chosen layer (and a hook on the final norm for L) keeps, per step, the state of the row that
chose the token (the last query row), and at prefill the states of the image tokens. With them the
recorder files, per sample:

    hidden        [T, K, d]  the kept states of each step's last row (`RecordConfig.array_dtype`)
    image_hidden  [K, n, d]  the image tokens' states at prefill
    lens          [T, K]     log p(chosen token) under the logit lens of each kept state:
                             log_softmax(W_U · norm(h))[y], norm left out for the final state
    image_lens    [T, K]     the same, best over the image tokens' states (max_i log p_i(y))

The two lens arrays need the model's unembedding and final norm, so they are computed here (torch),
not from the store; everything else reads the stored arrays (`afip_probe.metrics.signals`). Both are
read through the modules' ``forward`` and `torch.nn.functional.linear`, so computing them fires no hook.

Example:
    >>> from afip_probe import trace
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava()
    >>> inputs = adapter_for(model, processor).build_inputs(tiny.random_images(1), "describe")
    >>> with trace(model, processor, hidden=[0, 2]) as rec:
    ...     _ = model.generate(**inputs, max_new_tokens=3)
    >>> tr = rec.traces[0]
    >>> tr.hidden.shape, tr.image_hidden.shape, tr.lens.shape       # [T, K, d], [K, n, d], [T, K]
    ((3, 2, 64), (2, 16, 64), (3, 2))
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch

from ..errors import AfipError
from ..models import ModelAdapter
from ..records import resolve_hidden

if TYPE_CHECKING:  # the recorder imports nothing from here
    from .recorder import Recorder

#: names of a decoder's final norm, by family (LFM2-VL names it `embedding_norm`)
NORM_NAMES = ("norm", "final_layernorm", "embedding_norm")


def decoder_parts(adapter: ModelAdapter) -> tuple[torch.nn.ModuleList, torch.nn.Module]:
    """The decoder's layer list and final norm, which hidden-state indices 0..L name."""
    decoder = adapter.decoder()
    layers = getattr(decoder, "layers", None)
    norm = next((getattr(decoder, n) for n in NORM_NAMES if isinstance(getattr(decoder, n, None), torch.nn.Module)),
                None)
    if not isinstance(layers, torch.nn.ModuleList) or norm is None:
        raise AfipError(f"{type(decoder).__name__} has no `layers` list and final norm afip-probe knows: hidden "
                        "states cannot be recorded for this model (trace without --hidden)")
    return layers, norm


class HiddenStates:
    """The kept hidden states of one traced model: hooks fill per-step buffers while the recorder's run is
    active; `finish` turns them into each sample's arrays, `live` into a streamer's."""

    def __init__(self, adapter: ModelAdapter, indices: Sequence[int], recorder: "Recorder"):
        self.layers, self.norm = decoder_parts(adapter)
        self.depth = len(self.layers)
        self.indices = list(resolve_hidden(list(indices), self.depth))
        if not self.indices:
            raise AfipError("give at least one hidden-state index to record")
        self.unembed = adapter.model.get_output_embeddings()
        if self.unembed is None:
            raise AfipError(f"{type(adapter.model).__name__} has no output embeddings: the logit lens needs them")
        self.softcap = getattr(adapter.text_config, "final_logit_softcapping", None)
        self.recorder = recorder
        self.dtype = getattr(torch, recorder.config.array_dtype)
        self.rows: list[list[torch.Tensor | None]] = []  # steps x K x [B, d] (the model's dtype)
        self.prefill: list[torch.Tensor | None] = []  # K x [B, P, d]: every prompt state at prefill
        self.is_image: torch.Tensor | None = None  # [B, P]
        self._image_cache: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # sample -> per slot (normed
        # image states [n, d], their log-normaliser over the vocabulary [n])

    # ------------------------------------------------------------------ hooks
    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """The hooks on the decoder, removed on exit."""
        handles = []
        try:
            for slot, index in enumerate(self.indices):
                if index < self.depth:
                    handles.append(self.layers[index].register_forward_pre_hook(
                        functools.partial(self._pre_hook, slot), with_kwargs=True))
                else:
                    handles.append(self.norm.register_forward_hook(functools.partial(self._hook, slot)))
            yield
        finally:
            for h in handles:
                h.remove()

    def _pre_hook(self, slot: int, _module: Any, args: tuple, kwargs: dict) -> None:
        self._keep(slot, args[0] if args else kwargs["hidden_states"])

    def _hook(self, slot: int, _module: Any, _args: Any, out: torch.Tensor) -> None:
        self._keep(slot, out)

    def _keep(self, slot: int, states: torch.Tensor) -> None:
        """File `states` [B, q, d] of the current step: its last row, and at prefill every prompt row."""
        step = self.recorder.current_step
        if step is None or step < 0:
            return
        while len(self.rows) <= step:
            self.rows.append([None] * len(self.indices))
        self.rows[step][slot] = states[:, -1].detach().clone()  # [B, d]
        if step == 0:
            self.prefill[slot] = states.detach().clone()  # [B, P, d]

    # ------------------------------------------------------------------ runs
    def start_run(self, is_image_prompt: torch.Tensor) -> None:
        self.rows, self.prefill = [], [None] * len(self.indices)
        self.is_image, self._image_cache = is_image_prompt, {}

    def _normed(self, states: torch.Tensor, slot: int) -> torch.Tensor:
        """States kept at `slot` as the unembedding reads them: through the final norm, unless already normed."""
        return states if self.indices[slot] == self.depth else self.norm.forward(states)

    def _unembedded(self, z: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [..., V] (float32, softcapped where the model caps them) of normed states z [..., d]; only
        the columns of `ids` when given (a Linear unembedding reads just those rows)."""
        if isinstance(self.unembed, torch.nn.Linear):
            weight, bias = self.unembed.weight, self.unembed.bias
            if ids is not None:
                weight, bias = weight[ids], None if bias is None else bias[ids]
            logits = torch.nn.functional.linear(z, weight, bias).float()
        else:
            logits = self.unembed.forward(z).float()
            logits = logits if ids is None else logits[..., ids]
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def _steps(self, first: int, last: int) -> torch.Tensor:
        """The kept rows of steps first..last-1: [S, K, B, d]."""
        missing = [s for s in range(first, last) if s >= len(self.rows) or any(r is None for r in self.rows[s])]
        if missing:
            raise AfipError(f"no hidden state was recorded for steps {missing[:5]} (is the decoder's forward hooked?)")
        return torch.stack([torch.stack(self.rows[s]) for s in range(first, last)])

    def _lens(self, rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """log p(ids) under the logit lens of rows [S, K, B, d] -> [S, K, B], ids [S, B]."""
        out = torch.empty(rows.shape[:3], dtype=torch.float32, device=rows.device)
        with torch.no_grad():
            for slot in range(rows.shape[1]):
                logp = torch.log_softmax(self._unembedded(self._normed(rows[:, slot], slot)), dim=-1)  # [S, B, V]
                out[:, slot] = logp.gather(-1, ids[..., None].to(logp.device)).squeeze(-1)
        return out

    def _image_lens_of(self, ids: torch.Tensor, b: int) -> torch.Tensor:
        """max over sample b's image tokens of log p(ids) under their prefill states' lens: ids [S] -> [S, K]."""
        if b not in self._image_cache:  # once per sample and run: the normed states and their normalisers
            with torch.no_grad():
                normed = [self._normed(states, slot) for slot, states in enumerate(self.image_states(b))]
                self._image_cache[b] = [(z, torch.logsumexp(self._unembedded(z), dim=-1)) for z in normed]
        out = []
        with torch.no_grad():
            for z, lse in self._image_cache[b]:  # z [n, d], lse [n]
                chosen = self._unembedded(z, ids.to(z.device)) - lse[:, None]  # [n, S]
                out.append(chosen.amax(0))
        return torch.stack(out, dim=-1)  # [S, K]

    def image_states(self, b: int) -> torch.Tensor:
        """Sample b's image tokens' prefill states [K, n, d]."""
        if self.is_image is None or any(states is None for states in self.prefill):
            raise AfipError("no prefill hidden state was recorded (is the decoder's forward hooked?)")
        positions = self.is_image[b].nonzero().flatten()
        return torch.stack([states[b, positions] for states in self.prefill])  # type: ignore[index]

    def finish(self, generated: torch.Tensor, lengths: Sequence[int]) -> list[dict[str, np.ndarray]]:
        """Each sample's `hidden`, `image_hidden`, `lens`, `image_lens` (named as `SampleTrace` fields), from
        the run's generated ids [B, T] and each sample's kept length."""
        steps = generated.shape[1]
        rows = self._steps(0, steps)  # [T, K, B, d]
        lens = self._lens(rows, generated.T.to(rows.device))  # [T, K, B]
        out = []
        for b, length in enumerate(lengths):
            ids = generated[b, :length]
            out.append({
                "hidden": rows[:length, :, b].to(self.dtype).cpu().numpy(),
                "image_hidden": self.image_states(b).to(self.dtype).cpu().numpy(),
                "lens": lens[:length, :, b].cpu().numpy(),
                "image_lens": self._image_lens_of(ids, b).cpu().numpy(),
            })
        self.rows, self.prefill, self._image_cache = [], [None] * len(self.indices), {}
        return out

    def live(self, first: int, tokens: Sequence[int], b: int = 0) -> dict[str, np.ndarray]:
        """While generate() runs: sample b's arrays for steps `first`.. (they chose `tokens`), named as stored
        (`array_name`) and rounded to the record dtype as stored: hidden [S, K, d], lens and image_lens [S, K],
        image_hidden [K, n, d]."""
        from ..records import array_name

        rows = self._steps(first, first + len(tokens))[:, :, b]  # [S, K, d]
        ids = torch.tensor(list(tokens), dtype=torch.long, device=rows.device)
        lens = self._lens(rows[:, :, None], ids[:, None])[:, :, 0]  # [S, K]
        return {array_name("hidden"): rows.to(self.dtype).float().cpu().numpy(),  # as stored: in the record dtype
                array_name("image_hidden"): self.image_states(b).to(self.dtype).float().cpu().numpy(),
                array_name("lens"): lens.cpu().numpy(),
                array_name("image_lens"): self._image_lens_of(ids, b).cpu().numpy()}


@contextlib.contextmanager
def recording_hidden(adapter: ModelAdapter, recorder: "Recorder") -> Iterator[None]:
    """Keep `recorder.config.hidden`'s states while the context is open (the recorder files them)."""
    states = HiddenStates(adapter, recorder.config.hidden, recorder)
    recorder.hidden = states
    with states.installed():
        yield
