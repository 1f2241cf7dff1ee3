"""Pipelines: the jobs afip-probe runs end to end, each a library function behind a thin command.

- `settings`: `GenerationSettings`, the one record of how to generate (model, prompt, record level,
  new tokens, batch size, dtype, device, seed), shared by every job and written to each manifest;
- `tracing`: generate over images with the interceptor on, into a trace store (`trace_images`);
- `generation`: batched generation without recording (captions, POPE answers), resumable JSONL;
- `comparison`: the same images with correctors off and on, CHAIR before/after and figures;
- `experiments`: the AFIP hyper-parameter sweep and the S1/S2/S3 ablation on the organism;
- `organism_eval`, `organism_training`: the bundled organism's CHAIR evaluation and its training;
- `demo`: the main job on the organism, written as a short report.
"""
