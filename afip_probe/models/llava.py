"""LLaVA-1.5 (`LlavaForConditionalGeneration`): a square patch grid, 24x24 over 336 px for llava-1.5."""

from __future__ import annotations

from typing import Any

from .base import ModelAdapter


class LlavaAdapter(ModelAdapter):
    family = "llava"

    def grids(self, inputs: dict[str, Any]) -> list[tuple[int, int]]:
        vision = self.model.config.vision_config
        side = int(vision.image_size) // int(vision.patch_size)
        return [(side, side)] * int(inputs["input_ids"].shape[0])
