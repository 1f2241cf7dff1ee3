"""Compatibility shims for bugs of the pinned transformers release, each applied only where the bug is there.

- Llama 4 (transformers 5.24): `Llama4ForConditionalGeneration.forward` builds its output with
  ``image_outputs=outputs.image_outputs``, where ``outputs`` is the text model's `MoeCausalLMOutputWithPast`,
  which has no such field: every call raises ``AttributeError: 'MoeCausalLMOutputWithPast' object has no
  attribute 'image_outputs'``. `patch_llama4_output` gives that class the attribute (None), which is what the
  conditional-generation output then carries; generation is otherwise the model's own (checked token for
  token against eager in tests/test_families.py).

Example:
    >>> llama4_output_bug() in (True, False)
    True
"""

from __future__ import annotations

import inspect


def llama4_output_bug() -> bool:
    """Whether the installed transformers has the Llama 4 bug: the conditional-generation forward reads
    ``outputs.image_outputs`` and the text model's output class has no such field (nor the attribute)."""
    try:
        from transformers.modeling_outputs import MoeCausalLMOutputWithPast
        from transformers.models.llama4 import modeling_llama4
    except ImportError:  # no Llama 4 in this transformers: nothing to fix
        return False
    forward = inspect.getsource(modeling_llama4.Llama4ForConditionalGeneration.forward)
    reads = "outputs.image_outputs" in forward
    fields = getattr(MoeCausalLMOutputWithPast, "__dataclass_fields__", {})
    return reads and "image_outputs" not in fields and not hasattr(MoeCausalLMOutputWithPast, "image_outputs")


def patch_llama4_output() -> bool:
    """Give `MoeCausalLMOutputWithPast` an ``image_outputs`` class attribute (None) when, and only when, the
    installed transformers has the Llama 4 bug (`llama4_output_bug`); returns whether it patched.

    Called where models are adapted (`afip_probe.models.adapter_for`, hence `load`, `trace`, `correct`).
    Remove it, and this module's test, once the pinned transformers reads the image outputs from where the
    text model does not write them no more (`llama4_output_bug()` is then False and this does nothing).
    """
    if not llama4_output_bug():
        return False
    from transformers.modeling_outputs import MoeCausalLMOutputWithPast

    MoeCausalLMOutputWithPast.image_outputs = None  # type: ignore[attr-defined]
    return True
