"""Figures: attention heatmaps over images and before/after comparisons (matplotlib)."""
