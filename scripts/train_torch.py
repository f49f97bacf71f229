#!/usr/bin/env python3
"""The PyTorch reference for `cargo bench --bench train`: trains the same Llama (or GPT-2) as
`coconut-lens train` on the same batches, with the same recipe, and times an optimizer step.

    python scripts/train_torch.py BATCHES_JSON [--threads 2] [--steps N]

BATCHES_JSON is written by the benchmark: the model's `config.json` fields (`config`), the
optimizer settings (`lr`, `betas`, `eps`, `weight_decay`, `clip_norm`, `frontier`) and a list
of batches, each `{"rows", "prefix_len", "prefix", "latents", "suffix_len", "suffix",
"loss_mask", "frontier"}` exactly as `train::Batch` holds them.

One step is what the Rust trainer does: the prompts in one causal pass with a KV cache, each
continuous thought (the last final-normed hidden state) fed back as the next input embedding
with gradients through it, the language suffix; the language loss (summed cross-entropy of
the masked suffix tokens) plus `frontier` times the frontier loss (cross-entropy of the
outputs at <|start-latent|> and after each thought against the uniform distribution over
their target ids), divided by the rows; backward; global-norm clipping; AdamW (decay on
matrices only). The model is built with transformers (`LlamaForCausalLM` /
`GPT2LMHeadModel`, eager attention) from `config`, initialised by transformers. The first
step is a warm-up and is not timed.

Prints one JSON line: {"step_ms": median, "min_ms", "max_ms", "steps", "threads",
"losses": [...], "torch": ..., "transformers": ...}.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def build(cfg):
    import transformers

    kind = cfg["model_type"]
    if kind == "llama":
        conf = transformers.LlamaConfig(**cfg)
        model = transformers.LlamaForCausalLM(conf)
    elif kind == "gpt2":
        conf = transformers.GPT2Config(**cfg)
        model = transformers.GPT2LMHeadModel(conf)
    else:
        sys.exit(f"error: unsupported model_type {kind}")
    model.config._attn_implementation = "eager"
    return model


def step_loss(model, b, frontier_weight):
    from transformers import DynamicCache

    rows, P, S, N = b["rows"], b["prefix_len"], b["suffix_len"], b["latents"]
    emb = model.get_input_embeddings()
    prefix = torch.tensor(b["prefix"]).view(rows, P)
    suffix = torch.tensor(b["suffix"]).view(rows, S)
    mask = torch.tensor(b["loss_mask"]).view(rows, S)
    cache = DynamicCache()

    def run(x, start):
        pos = torch.arange(start, start + x.shape[1]).unsqueeze(0).expand(rows, -1)
        out = model.model if hasattr(model, "model") else model.transformer
        h = out(inputs_embeds=x, past_key_values=cache, use_cache=True, position_ids=pos).last_hidden_state
        return h  # after the final norm

    h = run(emb(prefix), 0)
    last = h[:, -1:]
    outs = [last]
    for j in range(N):
        last = run(last, P + j)
        outs.append(last)
    hs = run(emb(suffix), P + N)
    before = torch.cat([last, hs[:, :-1]], 1) if S > 1 else last
    logp = F.log_softmax(before @ emb.weight.t(), -1)
    language = -(logp.gather(-1, suffix.unsqueeze(-1)).squeeze(-1) * mask).sum()
    total = language
    if b["frontier"] and frontier_weight > 0:
        k = N + 1
        target = torch.zeros(rows, k, emb.weight.shape[0])
        for r, sets in enumerate(b["frontier"]):
            for j, ids in enumerate(sets):
                target[r, j, ids] = 1.0 / max(len(ids), 1)
        logp_out = F.log_softmax(torch.cat(outs, 1) @ emb.weight.t(), -1)
        total = total + frontier_weight * (-(logp_out * target).sum())
    return total / rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("batches")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="steps to time (default: every batch after the first)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = json.load(open(args.batches))
    model = build(spec["config"])
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec["lr"],
        betas=tuple(spec["betas"]),
        eps=spec["eps"],
    )
    batches = spec["batches"]
    if args.steps:
        batches = batches[: args.steps + 1]
    times, losses = [], []
    for i, b in enumerate(batches):
        t0 = time.perf_counter()
        loss = step_loss(model, b, spec["frontier"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec["clip_norm"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = (time.perf_counter() - t0) * 1000
        losses.append(loss.item())
        if i > 0:
            times.append(dt)
        print(f"step {i}: {dt:.1f} ms, loss {loss.item():.4f}", file=sys.stderr)
    import transformers

    print(json.dumps({
        "step_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "steps": len(times),
        "threads": args.threads,
        "losses": losses,
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
    }))


if __name__ == "__main__":
    main()
