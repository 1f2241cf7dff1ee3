"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL (and MoE) and GLM-4V: the grid is (h / merge, w / merge) from `image_grid_thw`."""

from __future__ import annotations

from typing import Any

from ..errors import AfipError
from .base import ModelAdapter, per_sample


class Qwen2VLAdapter(ModelAdapter):
    family = "qwen2_vl"
    covers_whole_image = True  # smart resize of the whole image to multiples of patch x merge

    def image_grids(self, inputs: dict[str, Any]) -> list[list[tuple[int, int]]]:
        """Each image's merged grid from its row of `image_grid_thw` (the batch's images in order)."""
        thw = inputs.get("image_grid_thw")
        if thw is None:
            raise AfipError("Qwen2-VL inputs carry no image_grid_thw: build them with the model's processor")
        merge = int(self.model.config.vision_config.spatial_merge_size)
        grids = [(int(t) * (int(h) // merge), int(w) // merge) for t, h, w in thw.tolist()]
        owners = per_sample(inputs, self.image_token_id, [r * c for r, c in grids], "image_grid_thw rows")
        return [[grids[k] for k in mine] for mine in owners]


class Qwen25VLAdapter(Qwen2VLAdapter):
    family = "qwen2_5_vl"


class Qwen3VLAdapter(Qwen2VLAdapter):
    """Qwen3-VL (and its MoE): Qwen2-VL's layout (`image_grid_thw`, merged `spatial_merge_size` squared)."""

    family = "qwen3_vl"


class Glm4vAdapter(Qwen2VLAdapter):
    """GLM-4V: `image_grid_thw` merged by `spatial_merge_size`; the whole image is resized (no crop)."""

    family = "glm4v"
