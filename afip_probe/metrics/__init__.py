"""Metrics on recorded traces and hallucination labels (no torch models imported here).

CHAIR (`chair`), token labels (`labels`), POPE (`pope`).
"""
