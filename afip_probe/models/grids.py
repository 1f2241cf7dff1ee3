"""Families that show the image once, as one patch grid over the whole (resized) image.

- PaliGemma 1 and 2: SigLIP's (image_size / patch_size) squared tokens, a square; the image is
  resized to the fixed input size (no crop).
- Mistral 3 / Pixtral: the image resized (aspect kept) to multiples of patch x merge; its rows of
  ``[IMG]`` tokens are ended by ``[IMG_BREAK]`` (the last by ``[IMG_END]``). Those two are text
  tokens, not image keys; the ``[IMG]`` tokens are the grid, row-major: (height, width) of
  `image_sizes` divided by patch_size x spatial_merge_size.

Example:
    >>> from afip_probe.models.grids import pixtral_grid
    >>> pixtral_grid((48, 64), patch=8, merge=2)
    (3, 4)
"""

from __future__ import annotations

from typing import Any

from ..errors import AfipError
from .base import ModelAdapter, per_sample
from .llava import fixed_square_grids


def pixtral_grid(size: tuple[int, int], patch: int, merge: int) -> tuple[int, int]:
    """(rows, cols) of ``[IMG]`` tokens for an image the processor resized to `size` (height, width)."""
    step = patch * merge
    return int(size[0]) // step, int(size[1]) // step


class PaliGemmaAdapter(ModelAdapter):
    family = "paligemma"
    covers_whole_image = True

    def image_grids(self, inputs: dict[str, Any]) -> list[list[tuple[int, int]]]:
        vision = self.model.config.vision_config
        return fixed_square_grids(inputs, self.image_token_id, int(vision.image_size) // int(vision.patch_size))

    def build_prompt(self, prompt: str, num_images: int = 1) -> str:
        """PaliGemma has no chat template: its processor puts the image tokens and <bos> before the prompt."""
        if getattr(self.processor, "chat_template", None) is not None:
            return super().build_prompt(prompt, num_images)
        return prompt


class Mistral3Adapter(ModelAdapter):
    family = "mistral3"
    covers_whole_image = True

    def image_grids(self, inputs: dict[str, Any]) -> list[list[tuple[int, int]]]:
        sizes = inputs.get("image_sizes")
        if sizes is None:
            raise AfipError("Mistral 3 inputs carry no image_sizes: build them with the model's processor")
        patch = int(self.model.config.vision_config.patch_size)
        merge = int(self.model.config.spatial_merge_size)
        grids = [pixtral_grid(tuple(size), patch, merge) for size in sizes.tolist()]
        owners = per_sample(inputs, self.image_token_id, [r * c for r, c in grids], "image_sizes")
        return [[grids[k] for k in mine] for mine in owners]
