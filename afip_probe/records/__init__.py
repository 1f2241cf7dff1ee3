"""Records and schema: the torch-free bottom layer every other part of afip-probe builds on.

- `fields`: record levels, the per-head and per-layer statistic names, `RecordConfig`;
- `naming`: `array_name`, the one function that names every stored array;
- `layout`: where a sample's image tokens are (`ImageLayout`), its patch grids (`Tile`: the image, crops,
  overview) and which box of the image each covers;
- `trace`: `SampleTrace`, everything recorded for one sample (numpy);
- `rows`: `SampleRow`, the typed row of a store's samples table, and `token_rows`, its tokens table;
- `names`: `model_name`, the one name outputs give a model (``organism``, a folder's name, a hub id).

Example:
    >>> from afip_probe.records import array_name, HEAD_FIELDS
    >>> array_name("head", "var"), array_name("maps", source="corrected")
    ('head/var', 'corrected/maps')
    >>> HEAD_FIELDS[0]
    'var'
"""

from .fields import DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT, HEAD_FIELDS, LAYER_FIELDS, LEVELS, PER_IMAGE_FIELDS, RecordConfig
from .layers import Layers, check_hidden, resolve_hidden
from .layout import TILE_KINDS, ImageLayout, Region, Tile, grid_region, processor_region, read_tiles, tiles_json
from .names import ORGANISM, model_name
from .naming import ARRAY_KINDS, PER_SAMPLE_KINDS, SOURCES, array_name, parse_array_name
from .rows import SampleImage, SampleRow, images_json, sample_images, token_rows
from .trace import RowArrays, SampleTrace

__all__ = [
    "ARRAY_KINDS",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_PROMPT",
    "HEAD_FIELDS",
    "LAYER_FIELDS",
    "LEVELS",
    "ORGANISM",
    "PER_IMAGE_FIELDS",
    "PER_SAMPLE_KINDS",
    "SOURCES",
    "ImageLayout",
    "Layers",
    "RecordConfig",
    "Region",
    "RowArrays",
    "SampleImage",
    "SampleRow",
    "SampleTrace",
    "TILE_KINDS",
    "Tile",
    "array_name",
    "check_hidden",
    "grid_region",
    "images_json",
    "model_name",
    "parse_array_name",
    "processor_region",
    "read_tiles",
    "resolve_hidden",
    "sample_images",
    "tiles_json",
    "token_rows",
]
