"""Figures (matplotlib + seaborn), all drawn from token tables or stores, never from a model.

- `findings`: the paper's Fig. 2b, 3 (left and right), 4 left and 5;
- `heatmap`: attention over image tokens on the image, per head, before/after;
- `store_maps`: the same heatmaps read straight from a trace store;
- `report`: every figure of a store written as PNG + SVG + one HTML page.
"""
