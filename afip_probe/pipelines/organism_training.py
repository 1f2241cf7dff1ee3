"""Train the model organism: a small real `LlavaForConditionalGeneration` on synthetic COCO scenes.

The result is written with ``save_pretrained`` (model, tokenizer, processor), so it loads exactly like
an ``llava-hf`` checkpoint. Training is deterministic for a given seed and thread count.

Reproduce the bundled checkpoint (about 20 minutes on 2 CPU cores)::

    python -m afip_probe.pipelines.organism_training --out afip_probe/organism/checkpoint --overwrite

Example (a few steps, as the test suite does):
    >>> from afip_probe.pipelines.organism_training import TrainConfig, train
    >>> log = train(TrainConfig(steps=2, batch_size=4, train_scenes=16), out=None)  # doctest: +SKIP
    >>> len(log["loss"])                                                          # doctest: +SKIP
    2
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm  # text bars: tqdm.auto warns in a notebook without ipywidgets

from ..models.tiny import llama_style_tokenizer, tiny_llava
from ..organism import catalog
from ..organism import dataset as sc
from ..outputs import MARKER, claim_dir, record_written

IGNORE = -100
CHECKPOINT_KIND = "organism-checkpoint"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights."""

    seed: int = 0
    steps: int = 2400
    batch_size: int = 32
    train_scenes: int = 12000
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    question_fraction: float = 0.2  # share of yes/no examples in a batch
    layers: int = 4
    heads: int = 4
    hidden: int = 192
    intermediate: int = 512
    vision_layers: int = 3
    vision_hidden: int = 128
    vocab_size: int = 320
    threads: int = 2


def build_tokenizer(examples: list[str], vocab_size: int) -> Any:
    """A Llama-style BPE tokenizer trained on the organism's own language (words become single tokens)."""
    return llama_style_tokenizer(examples, vocab_size=vocab_size)


def _chat(processor: Any, question: str, answer: str | None) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    if answer is None:
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return processor.apply_chat_template(messages, tokenize=False)


class Examples:
    """Tokenised (prompt, answer) pairs with the image token expanded as the processor does."""

    def __init__(self, processor: Any, n_image_tokens: int):
        self.processor = processor
        self.tok = processor.tokenizer
        self.image_id = self.tok.convert_tokens_to_ids("<image>")
        self.n_image = n_image_tokens
        self._prompt_cache: dict[str, list[int]] = {}

    def _expand(self, ids: list[int]) -> list[int]:
        out: list[int] = []
        for i in ids:
            out.extend([i] * self.n_image if i == self.image_id else [i])
        return out

    def encode(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        """(input ids, labels) where labels are IGNORE on the prompt."""
        if question not in self._prompt_cache:
            self._prompt_cache[question] = self._expand(self.tok(_chat(self.processor, question, None))["input_ids"])
        prompt = self._prompt_cache[question]
        full = self._expand(self.tok(_chat(self.processor, question, answer))["input_ids"])
        if full[: len(prompt)] != prompt:
            raise RuntimeError(f"prompt tokens are not a prefix of the full example for {question!r}")
        return full, [IGNORE] * len(prompt) + full[len(prompt):]


def _collate(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)  # [B, S], right padded
    labels = torch.full((len(pairs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for b, (i, lab) in enumerate(pairs):
        ids[b, : len(i)] = torch.tensor(i)
        labels[b, : len(lab)] = torch.tensor(lab)
        mask[b, : len(i)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def pixel_values(processor: Any, images: list[Any], chunk: int = 512) -> torch.Tensor:
    """The processor's pixel values for all images, [N, 3, S, S]."""
    parts = [processor.image_processor(images[i: i + chunk], return_tensors="pt")["pixel_values"]
             for i in range(0, len(images), chunk)]
    return torch.cat(parts)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 10 %."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def train(cfg: TrainConfig, out: str | Path | None, progress: bool = True) -> dict[str, Any]:
    """Train from scratch; save the checkpoint to `out` (if given) and return the training log."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    data = [sc.make_scene(cfg.seed, "train", i) for i in range(cfg.train_scenes)]
    texts = [c for s in data for c in s.captions] + [q + " " + a for s in data for q, a in s.questions]
    tok = build_tokenizer(texts + [catalog.PROMPT], cfg.vocab_size)
    model, processor = tiny_llava(
        layers=cfg.layers, heads=cfg.heads, hidden=cfg.hidden, intermediate=cfg.intermediate,
        image_size=catalog.IMAGE_SIZE, patch_size=8, vision_layers=cfg.vision_layers, vision_hidden=cfg.vision_hidden,
        tokenizer=tok, seed=cfg.seed,
    )
    n_image = (catalog.IMAGE_SIZE // 8) ** 2
    enc = Examples(processor, n_image)
    pixels = pixel_values(processor, [s.image for s in data])  # [N, 3, 64, 64]
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    rng = np.random.default_rng([cfg.seed, 99])
    losses: list[float] = []
    bar: Any = None
    if progress:
        bar = tqdm(total=cfg.steps, desc="training organism", unit="step")
    for step in range(cfg.steps):
        idx = rng.integers(0, len(data), cfg.batch_size)
        pairs = []
        for i in idx:
            s = data[int(i)]
            if rng.random() < cfg.question_fraction:
                q, a = s.questions[int(rng.integers(len(s.questions)))]
            else:
                q, a = catalog.PROMPT, s.captions[int(rng.integers(len(s.captions)))]
            pairs.append(enc.encode(q, a))
        batch = _collate(pairs, tok.pad_token_id)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model(**batch, pixel_values=pixels[torch.as_tensor(idx)]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    log = {"config": asdict(cfg), "loss": [round(v, 6) for v in losses], "seconds": round(time.time() - t0, 1),
           "torch": torch.__version__, "num_parameters": sum(p.numel() for p in model.parameters())}
    if out is not None:
        save(model, processor, log, Path(out))
    return log


def save(model: Any, processor: Any, log: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    gen = model.generation_config
    gen.max_new_tokens = 96
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m afip_probe.pipelines.organism_training", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="checkpoint folder to write (new or empty; an earlier checkpoint "
                   "only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier checkpoint in --out (only the files "
                   "training wrote)")
    defaults = TrainConfig()
    for name, value in asdict(defaults).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = vars(p.parse_args(argv))
    out, overwrite = args.pop("out"), args.pop("overwrite")
    claim_dir(out, CHECKPOINT_KIND, overwrite=overwrite)
    log = train(TrainConfig(**args), out)
    record_written(out, [p.name for p in Path(out).iterdir() if p.name != MARKER])
    print(f"trained {log['num_parameters']:,} parameters in {log['seconds']} s; final loss {log['loss'][-1]:.4f}"
          f" -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
