"""`GenerationSettings`: how to generate, in one typed record used by every pipeline and command.

The trace, compare, chair-eval, pope-eval and demo commands all build one from the same flags
(`afip_probe.commands.flags.add_generation_flags`), with the defaults written once here; a trace
store's manifest is written from it.

Example:
    >>> s = GenerationSettings(model="organism", max_new_tokens=32)
    >>> s.batch_size, s.prompt
    (8, 'Please describe this image in detail.')
    >>> s.generate_kwargs()
    {'max_new_tokens': 32, 'do_sample': False}
    >>> GenerationSettings(batch_size=0)
    Traceback (most recent call last):
    ...
    afip_probe.errors.AfipError: batch_size must be at least 1, got 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loading models imports torch: the command line's --help must not
    from ..models import LoadedModel

from ..errors import AfipError, require_positive
from ..records import DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT, RecordConfig, check_hidden, resolve_hidden

DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class GenerationSettings:
    """What to run and how: the model, the prompt, what to record and how to decode."""

    model: str = "organism"  # hub id, local save_pretrained folder, or "organism"
    prompt: str = DEFAULT_PROMPT
    level: str = "stats"  # record level when tracing (stats, maps, full)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    batch_size: int = 8  # images per generate() call, left-padded
    dtype: str = "auto"  # float16 on a GPU, float32 on the CPU
    device: str = "auto"
    seed: int = 0  # every batch starts from torch.manual_seed(seed + batch number)
    do_sample: bool = False  # greedy unless asked
    trust_remote_code: bool = False
    exact: bool = True  # traced layers keep the model's own outputs; False: decoding steps read their keys once
    hidden: str = ""  # decoder hidden states to record when tracing ("", "all", "last", "2-", "0,4"; opt-in)

    def __post_init__(self) -> None:
        require_positive(self.max_new_tokens, "max_new_tokens")
        require_positive(self.batch_size, "batch_size")
        RecordConfig(self.level)  # validates the level before anything is loaded
        check_hidden(self.hidden)  # the --hidden spec's syntax, before anything is loaded
        if self.dtype not in DTYPE_CHOICES:
            raise AfipError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPE_CHOICES)}")

    def replace(self, **changes: Any) -> "GenerationSettings":
        return dataclasses.replace(self, **changes)

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` besides the inputs."""
        return {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}

    def load(self, progress: bool = True) -> "LoadedModel":
        """The model these settings name, loaded with their device and dtype."""
        from ..models import load

        return load(self.model, device=self.device, dtype=self.dtype, trust_remote_code=self.trust_remote_code,
                    progress=progress)

    def manifest(self, loaded: "LoadedModel") -> dict[str, Any]:
        """The settings as a trace store's manifest records them (with what loading resolved)."""
        return {
            "model": loaded.name,
            "family": loaded.adapter.family,
            "record_level": self.level,
            "array_dtype": "float16",
            "prompt": self.prompt,
            "max_new_tokens": self.max_new_tokens,
            "batch_size": self.batch_size,
            "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
            "seed": self.seed,
            "num_layers": loaded.adapter.num_layers,
            # decoder layer number of each traced layer (a hybrid decoder traces its attention layers only)
            "decoder_layers": list(loaded.adapter.decoder_layers),
            "num_heads": loaded.adapter.num_heads,
            "decoding": "sample" if self.do_sample else "greedy",
            "exact_outputs": self.exact,
            # what computed the layer outputs the tokens came from (docs/design.md: the exactness contract)
            "attn_implementation": loaded.adapter.attn_implementation,
            "outputs": (f"the model's own {loaded.adapter.attn_implementation} attention, bit for bit" if self.exact
                        else f"prefill: the model's own {loaded.adapter.attn_implementation} attention; decoding "
                        "steps: softmax(B)·V in float32 from the recorded row (single-read)"),
            # `output_hidden_states` indices of the recorded hidden states ([] when none were)
            "hidden_layers": list(resolve_hidden(self.hidden, loaded.adapter.decoder_depth)),
        }


def resolve_model(settings: GenerationSettings, loaded: "LoadedModel | None" = None,
                  progress: bool = True) -> "LoadedModel":
    """`loaded` when given (a model already in memory), else the model `settings` name."""
    return loaded if loaded is not None else settings.load(progress)
