"""Decoder layers as users write them, one convention everywhere (CLI ``--layers``, corrector specs
``layers=...``, Python): ranges are inclusive. ``"16-31"`` is layers 16 to 31, ``"16-"`` layer 16 to the
last, ``"-3"`` layers 0 to 3, ``"0,2,5"`` those three; an iterable of ints is taken as it is. A layer the
model does not have is an error, not silently dropped.

Example:
    >>> sorted(Layers("2-4").resolve(8))
    [2, 3, 4]
    >>> sorted(Layers("6-").resolve(8)), sorted(Layers([0, 7]).resolve(8))
    ([6, 7], [0, 7])
    >>> Layers("2-9").resolve(8)
    Traceback (most recent call last):
    ...
    afip_probe.errors.AfipError: layers '2-9': the model has layers 0..7
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ..errors import AfipError

SYNTAX = "write layers like 16-31 (inclusive), 16- (to the last), 3 or 0,2,5"


class Layers:
    """A set of decoder layers, resolved against a model's layer count by `resolve`."""

    def __init__(self, spec: "str | Iterable[int] | Layers"):
        if isinstance(spec, Layers):
            spec = spec.text
        self.text = spec if isinstance(spec, str) else ",".join(str(int(i)) for i in spec)
        self._parts: list[tuple[int, int | None]] = []  # (first, last or None for "to the last"), inclusive
        try:
            for part in (p.strip() for p in self.text.split(",")):
                if not part:
                    continue
                lo, dash, hi = part.partition("-")
                first = int(lo) if lo else 0
                last = (int(hi) if hi else None) if dash else first
                if first < 0 or (last is not None and last < first):
                    raise ValueError
                self._parts.append((first, last))
        except ValueError:
            raise AfipError(f"layers {self.text!r}: {SYNTAX}") from None
        if not self._parts:
            raise AfipError(f"layers {self.text!r}: no layer given; {SYNTAX}")
        self._resolved: dict[int, frozenset[int]] = {}

    def resolve(self, num_layers: int) -> frozenset[int]:
        """The layer indices for a model of `num_layers` layers; an index it does not have raises."""
        found = self._resolved.get(num_layers)
        if found is None:
            if any(first >= num_layers or (last is not None and last >= num_layers) for first, last in self._parts):
                raise AfipError(f"layers {self.text!r}: the model has layers 0..{num_layers - 1}")
            found = frozenset(i for first, last in self._parts
                              for i in range(first, (num_layers - 1 if last is None else last) + 1))
            self._resolved[num_layers] = found
        return found

    def __repr__(self) -> str:
        return f"Layers({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layers) and other._parts == self._parts

    def __hash__(self) -> int:
        return hash(tuple(self._parts))


#: a ``--hidden`` spec that records no hidden state
NO_HIDDEN = ("", "none")


def resolve_hidden(spec: str | Sequence[int] | None, depth: int) -> tuple[int, ...]:
    """Hidden-state indices from a ``--hidden`` spec over 0..`depth` (``all``, ``last``, ``2-``, ``0,4``;
    the `afip_probe.records.Layers` convention) or a list of indices; () for none.

    >>> resolve_hidden("all", 4), resolve_hidden("last", 4), resolve_hidden("1,3-", 4)
    ((0, 1, 2, 3, 4), (4,), (1, 3, 4))
    """
    if spec is None or spec in NO_HIDDEN:
        return ()
    if isinstance(spec, str):
        if spec == "last":
            return (depth,)
        return tuple(sorted(Layers("0-" if spec == "all" else spec).resolve(depth + 1)))
    out = tuple(sorted({int(i) for i in spec}))
    if any(not 0 <= i <= depth for i in out):
        raise AfipError(f"hidden-state indices run from 0 to {depth} (the decoder's depth), not {list(out)}")
    return out


def check_hidden(spec: str) -> None:
    """Refuse a malformed ``--hidden`` spec now, before the model and so its depth is known (`resolve_hidden`
    checks the indices against the depth)."""
    if spec not in (*NO_HIDDEN, "all", "last"):
        Layers(spec)
