"""Live hallucination flags: each new piece of text with its risk, while generation runs.

`stream(...)` runs ``generate()`` with the recorder on, in a greenlet of the calling thread. The streamer
collects the chosen tokens; at most `latency` seconds after a token is chosen (at a token boundary), it
reads the waiting steps' statistics from the recorder, scores them with a detector trained on features
known while generating (``--features live``: no relative position) and switches back to the caller with
the pieces; the caller's next ``next()`` after them resumes generation where it stopped. The risk of a
token equals what the same detector gives the stored statistics afterwards.

Why this shape (measured by ``benchmarks/streaming_cost.py`` on a 2-core CPU): generate() in a worker
thread ran 1.2–1.4× slower than in the main thread (with one torch thread the gap vanished), and
summarising and scoring every token on its own lost the batched summaries that make tracing cheap.

While the caller holds a piece, generation is suspended inside ``generate()``: the trace hooks stay on the
model until the loop ends (or the generator is closed), and torch's grad mode is the caller's own.

Example:
    >>> import afip_probe as ap
    >>> m = ap.load("organism", progress=False)
    >>> image = ap.organism_scenes(1, progress=False).images[0]
    >>> pieces = list(ap.stream(m, image, detector="pas_layer0", max_new_tokens=5))  # a training-free signal
    >>> len(pieces), all(p.risk is not None for p in pieces)
    (5, True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import greenlet
import numpy as np
import torch
from transformers.generation.streamers import BaseStreamer

from ..errors import AfipError
from ..hooks import trace
from ..images import load_image
from ..metrics.detect import Detector, LiveScorer, load_detector
from ..metrics.signals import SampleContext, recording_needs
from ..models import LoadedModel, ModelAdapter, adapter_for
from ..records import DEFAULT_PROMPT, SampleTrace, resolve_hidden


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
    """Collects the chosen tokens and hands them to the consumer (`caller`, the greenlet that iterates
    `stream`) as `StreamPiece`s, suspending generate() until the consumer asks for more.

    A token is handed over as soon as it is chosen unless the next one is expected early enough for both to
    go together within `latency`: it waits only while (time the oldest waiting token has waited) + (the last
    step's duration) stays under `latency`. A model slower than `latency` per token hands over every token
    the moment it is chosen; a fast one, in bursts of about `latency`."""

    def __init__(self, recorder: Any, tokenizer: Any, scorer: LiveScorer | None, caller: greenlet.greenlet,
                 latency: float):
        self.recorder, self.tokenizer, self.scorer, self.caller = recorder, tokenizer, scorer, caller
        self.latency = latency
        self.tokens: list[int] = []  # every generated token so far
        self.sent = 0  # how many of them were handed over
        self.text = ""  # their text
        self.waiting_since: float | None = None  # when the oldest waiting token was chosen
        self.last_token = time.perf_counter()  # when the previous token was chosen (first: when generate() began)
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first streams the prompt
            self.prompt_seen = True
            return
        self.tokens.append(int(value.reshape(-1)[0]))
        now = time.perf_counter()
        step, self.last_token = now - self.last_token, now
        if self.waiting_since is None:
            self.waiting_since = now
        if now - self.waiting_since + step >= self.latency:  # waiting for the next token would make this late
            self.hand_over()

    def end(self) -> None:
        if self.sent < len(self.tokens):
            self.hand_over()

    def hand_over(self) -> None:
        first, tokens = self.sent, self.tokens[self.sent:]
        live = self.recorder.steps_since(first, tokens)
        texts = self.tokenizer.batch_decode([self.tokens[: i + 1] for i in range(first, len(self.tokens))],
                                            skip_special_tokens=True)
        risks = [None] * len(tokens) if self.scorer is None else \
            self.scorer(live.arrays, live.token_entropy, live.logprob, tokens, first_step=first).tolist()
        pieces = []
        for i, (token, text) in enumerate(zip(tokens, texts)):
            piece = text[len(self.text):] if text.startswith(self.text) else text
            self.text = text
            pieces.append(StreamPiece(first + i, token, piece, float(live.token_entropy[i]),
                                      float(live.logprob[i]), risks[i]))
        self.sent, self.waiting_since = len(self.tokens), None
        self.caller.switch(pieces)


def stream(model: Any, processor: Any = None, image: Any = None, prompt: str = DEFAULT_PROMPT,
           detector: Detector | str | None = None,
           max_new_tokens: int = 64, adapter: ModelAdapter | None = None, latency: float = 0.05,
           exact: bool = True, **generate_kwargs: Any) -> Iterator[StreamPiece]:
    """Generate for one image and yield each token's `StreamPiece`, at most about `latency` seconds after
    the token is chosen (judged by the last step's duration: a model whose steps slow down suddenly can
    make a waiting token late by the difference).

    Tokens that come faster than `latency` are handed over in bursts, summarised and scored together (a
    fast model keeps tracing's batched summaries); a model slower than `latency` per token, and
    ``latency=0``, hand over every token the moment it is chosen.
    `exact` is `trace`'s (False: decoding steps read their keys once); `generate_kwargs` go to generate()
    (greedy unless ``do_sample=True``).

    `model`: a `LoadedModel` (``afip_probe.load``), given as ``stream(m, image)``, or a module with its
    processor, ``stream(model, processor, image)``. `image`: a PIL image or an image file. `detector`: a
    `Detector`, its JSON file, or a signal column such as ``"pas_layer0"`` (`load_detector`)."""
    if isinstance(model, LoadedModel):
        if image is None:  # stream(m, image)
            image, processor = processor, None
        model, processor, adapter = model.model, processor or model.processor, adapter or model.adapter
    if image is None or processor is None:
        raise AfipError("stream needs an image: stream(m, image) with m = afip_probe.load(...), or "
                        "stream(model, processor, image)")
    if not hasattr(image, "width"):
        image = load_image(Path(image))
    if detector is not None:
        detector = load_detector(detector)
    if latency < 0:
        raise AfipError(f"latency is a time in seconds, >= 0 (got {latency})")
    adapter = adapter or adapter_for(model, processor)
    device = next(model.parameters()).device
    inputs = adapter.build_inputs([image], prompt, device=device)
    level, hidden = "stats", ()
    scorer = None
    if detector is not None:  # record what the detector reads: maps for ADS, its hidden states
        level, hidden = recording_needs(detector.features, detector.trained_on.get("hidden_layers") or ())
        if not hidden and any(f in ("ic", "image_ic") for f in detector.features):  # a signal alone: every layer
            hidden = resolve_hidden("all", adapter.decoder_depth)
        layout = adapter.layouts(inputs)[0]
        prompt_ids = inputs["input_ids"][0].tolist()
        trace_like = SampleTrace(prompt_ids, [], layout, {}, {}, np.zeros(0), np.zeros(0))
        tiles = adapter.sample_tiles(layout, prompt_ids, [(image.width, image.height)])
        context = SampleContext.from_trace(trace_like, tiles,
                                           adapter.num_layers, hidden)
        scorer = LiveScorer(detector, adapter.num_layers, context)
    tokenizer = getattr(processor, "tokenizer", processor)
    rec = trace(model, processor, adapter=adapter, exact=exact, level=level, hidden=hidden)
    streamer = _Streamer(rec, tokenizer, scorer, greenlet.getcurrent(), latency)
    worker = greenlet.greenlet(lambda: model.generate(**inputs, max_new_tokens=max_new_tokens, streamer=streamer,
                                                      **{"do_sample": False, **generate_kwargs}))
    grad = _GradModes()
    try:
        while True:
            pieces = grad.run(worker)  # generate() until the next hand-over, or to its end (then: its output)
            if worker.dead:
                break
            yield from pieces
    finally:
        if not worker.dead:  # the consumer stopped early: unwind generate() (its hooks and contexts) now
            grad.run(worker, stop=True)
        rec.close()


class _GradModes:
    """Each side of the switch keeps its own grad mode (torch keeps one per thread, and generate() turns grad
    off for its whole run): the caller's while it holds a piece, generate()'s while it runs."""

    def __init__(self) -> None:
        self.worker = torch.is_grad_enabled()

    def run(self, worker: greenlet.greenlet, stop: bool = False) -> Any:
        caller = torch.is_grad_enabled()
        torch.set_grad_enabled(self.worker)
        try:
            return worker.throw(greenlet.GreenletExit) if stop else worker.switch()
        finally:
            self.worker = torch.is_grad_enabled()
            torch.set_grad_enabled(caller)


def risky_words(pieces: list[StreamPiece], vocabulary: set[str], threshold: float) -> list[int]:
    """Indices of pieces that are object words (in CHAIR's `vocabulary`) with risk at or above `threshold`."""
    out = []
    for i, p in enumerate(pieces):
        word = p.text.strip().lower().strip(".,;:!?")
        if p.risk is not None and p.risk >= threshold and (word in vocabulary or word.rstrip("s") in vocabulary):
            out.append(i)
    return out
