"""LLaVA-1.5 (`LlavaForConditionalGeneration`): a square patch grid per image, 24x24 over 336 px for llava-1.5."""

from __future__ import annotations

from typing import Any

from .base import ModelAdapter


def fixed_square_grids(inputs: dict[str, Any], image_token_id: int, side: int) -> list[list[tuple[int, int]]]:
    """Per sample, one `side` x `side` grid per image, for families whose every image is that many tokens."""
    per = side * side
    return [[(side, side)] * (int((row == image_token_id).sum()) // per) for row in inputs["input_ids"]]


class LlavaAdapter(ModelAdapter):
    family = "llava"

    def image_grids(self, inputs: dict[str, Any]) -> list[list[tuple[int, int]]]:
        vision = self.model.config.vision_config
        return fixed_square_grids(inputs, self.image_token_id, int(vision.image_size) // int(vision.patch_size))
