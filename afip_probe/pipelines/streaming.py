"""Live hallucination flags: each new piece of text with its risk, while generation runs.

`stream(...)` runs ``generate()`` in a worker thread with the recorder on; as each token is chosen, the
statistics of that step (already summarised by the recorder) go through a detector trained on
features known while generating (``--features live``: no relative position), and the piece is yielded
at once. The risk of a token equals what the same detector gives the stored statistics afterwards.

Example:
    >>> from afip_probe.metrics.detect import Detector
    >>> for piece in stream(m.model, m.processor, image, detector=Detector.load("det.json")):  # doctest: +SKIP
    ...     print(piece.text, end="", flush=True)
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator

from transformers.generation.streamers import BaseStreamer

from ..hooks import trace
from ..metrics.detect import Detector, LiveScorer
from ..models import ModelAdapter, adapter_for
from ..records import DEFAULT_PROMPT


@dataclass
class StreamPiece:
    """One generated token as it arrives: its text piece, and its risk when a detector is given."""

    step: int
    token_id: int
    text: str
    token_entropy: float
    logprob: float
    risk: float | None = None


class _Streamer(BaseStreamer):
    """Turns each chosen token into a `StreamPiece` (in generate()'s thread) and hands it over a queue."""

    def __init__(self, recorder: Any, tokenizer: Any, scorer: LiveScorer | None):
        self.recorder, self.tokenizer, self.scorer = recorder, tokenizer, scorer
        self.out: queue.Queue[StreamPiece | BaseException | None] = queue.Queue()
        self.ids: list[int] = []
        self.text = ""
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first streams the prompt
            self.prompt_seen = True
            return
        try:
            token = int(value.reshape(-1)[0])
            step, arrays, entropy, logp = self.recorder.latest_step(0)
            self.ids.append(token)
            text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            piece = text[len(self.text):] if text.startswith(self.text) else text
            self.text = text
            risk = None if self.scorer is None else self.scorer(arrays, entropy, float(logp[token]))
            self.out.put(StreamPiece(step, token, piece, entropy, float(logp[token]), risk))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, who re-raises it
            self.out.put(e)

    def end(self) -> None:
        self.out.put(None)


def stream(model: Any, processor: Any, image: Any, prompt: str = DEFAULT_PROMPT, detector: Detector | None = None,
           max_new_tokens: int = 64, adapter: ModelAdapter | None = None,
           **generate_kwargs: Any) -> Iterator[StreamPiece]:
    """Generate for one image and yield each token's `StreamPiece` as soon as it is chosen."""
    adapter = adapter or adapter_for(model, processor)
    scorer = None if detector is None else LiveScorer(detector, adapter.num_layers)
    device = next(model.parameters()).device
    inputs = adapter.build_inputs([image], prompt, device=device)
    tokenizer = getattr(processor, "tokenizer", processor)
    rec = trace(model, processor, adapter=adapter)
    streamer = _Streamer(rec, tokenizer, scorer)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            model.generate(**inputs, max_new_tokens=max_new_tokens, streamer=streamer,
                           **{"do_sample": False, **generate_kwargs})
        except BaseException as e:  # noqa: BLE001
            failure.append(e)
            streamer.end()

    worker = threading.Thread(target=work, name="afip-probe-stream", daemon=True)
    worker.start()
    try:
        while True:
            item = streamer.out.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
        if failure:  # appended before the worker's end(), so already there
            raise failure[0]
    finally:
        worker.join()
        rec.close()


def risky_words(pieces: list[StreamPiece], vocabulary: set[str], threshold: float) -> list[int]:
    """Indices of pieces that are object words (in CHAIR's `vocabulary`) with risk at or above `threshold`."""
    out = []
    for i, p in enumerate(pieces):
        word = p.text.strip().lower().strip(".,;:!?")
        if p.risk is not None and p.risk >= threshold and (word in vocabulary or word.rstrip("s") in vocabulary):
            out.append(i)
    return out
