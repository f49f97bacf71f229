#!/usr/bin/env python3
"""Time the Coconut pipeline in PyTorch + transformers, as a baseline for the Rust benchmark.

Usage:
    python scripts/bench_torch.py MODEL_DIR [--inputs FILE] [--threads N] [--runs R]
                                  [--device cpu|cuda] [--dtype f32|bf16]

MODEL_DIR is a standard Hugging Face GPT-2 or Llama folder (config.json + model.safetensors;
no tokenizer needed). The model runs with eager attention, under torch.inference_mode(), with
torch.set_num_threads(N) (default 2), on --device (default cpu; cuda is CUDA device 0) in --dtype
(default f32; the lens softmax and entropy are computed in f32 whatever the dtype, as in
coconut-lens). On CUDA each timed run starts and ends synchronised with the device.

--inputs FILE is JSON:
    {"prompt_ids": [...], "start": id, "end": id, "latent": id,
     "thoughts": 6, "answer_tokens": 8, "top_k": 5}
Without it (as `cargo bench --bench pipeline` runs it): prompt_ids =
[(i * 7919 + 13) % min(V, 50000) for i in range(140)], start/end/latent = the last three ids
of the vocabulary (V-3, V-2, V-1), 6 thoughts, 8 answer tokens, top-5.

One timed run (model loading excluded) is:
  1. one cached forward over embed(prompt_ids + [start]) with all hidden states;
  2. `thoughts` continuous thoughts: the last position's final (post-norm) hidden state is fed
     back as the next input embedding, one cached step each;
  3. one cached step on embed(end): the answer's first step;
  4. greedy decoding of exactly `answer_tokens` tokens (no eos stop), one cached step per token
     after the first;
  5. the logit lens of the thoughts + answer_tokens steps: the L+1 residual streams x^0..x^L
     (x^L = output of the last block, before the final norm, taken with a forward hook) go
     through the final norm and the LM head in one batched matmul, then softmax, top-k ids and
     probabilities, the entropy of the layer-L distribution, and the angular distances
     arccos(cos(x^l, x^{l+1}))/pi; everything is materialised with .tolist().

The median over --runs runs (default 5) after one untimed warm-up run (which also checks the
hook and the hidden states against the model's own outputs) is printed as ONE JSON line on
stdout, e.g.
    {"pipeline_ms": 812.3, "prefix_ms": 190.2, "runs": 5, "threads": 2, "torch": "2.15.0", ...}
(prefix_ms: the median time to the end of step 1, the prefix forward.) Progress and diagnostics go to stderr.
"""

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from pathlib import Path


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def load_inputs(path, vocab_size):
    if path is None:
        # As the Rust benchmark's synthetic_prompt (which takes the modulus min(vocab, 50000)).
        return {
            "prompt_ids": [(i * 7919 + 13) % min(vocab_size, 50000) for i in range(140)],
            "start": vocab_size - 3,
            "end": vocab_size - 2,
            "latent": vocab_size - 1,
            "thoughts": 6,
            "answer_tokens": 8,
            "top_k": 5,
        }
    spec = json.loads(Path(path).read_text())
    for key in ("prompt_ids", "start", "end", "thoughts", "answer_tokens", "top_k"):
        if key not in spec:
            sys.exit(f"error: {path} has no {key!r}")
    spec.setdefault("latent", None)
    ids = list(spec["prompt_ids"]) + [spec["start"], spec["end"]]
    if not spec["prompt_ids"]:
        sys.exit("error: prompt_ids is empty")
    if any(not (0 <= int(i) < vocab_size) for i in ids):
        sys.exit(f"error: an id in {path} is outside the vocabulary of {vocab_size}")
    if spec["answer_tokens"] < 1 or spec["thoughts"] < 0 or spec["top_k"] < 1:
        sys.exit("error: need answer_tokens >= 1, thoughts >= 0, top_k >= 1")
    return spec


class Parts:
    """The pieces of a GPT-2 or Llama causal LM the pipeline uses directly."""

    def __init__(self, model):
        base = model.base_model
        layers = getattr(base, "h", None)
        if layers is None:
            layers = getattr(base, "layers")
        norm = getattr(base, "ln_f", None)
        if norm is None:
            norm = getattr(base, "norm")
        self.model = model
        self.embed = model.get_input_embeddings()
        self.norm = norm
        self.head = model.get_output_embeddings()
        self.n_layers = len(layers)
        self.last_block_out = None  # [1, D]: x^L at the last position of the latest forward
        layers[-1].register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        x = output[0] if isinstance(output, tuple) else output
        self.last_block_out = x[:, -1]


def pipeline(parts, spec, check=False, on_prefix=None):
    """One Coconut run. Returns the materialised results (lists). `on_prefix` is called when
    the prefix forward has run (the benchmark times it)."""
    import torch

    model, embed = parts.model, parts.embed
    device = embed.weight.device
    # Tolerance of the hook/hidden-state self-check: bf16 rounds at every op.
    tol = 1e-4 if embed.weight.dtype == torch.float32 else 2e-2
    resids = []  # per step: [L+1, D]

    def forward(inputs_embeds, past):
        out = model(
            inputs_embeds=inputs_embeds,
            past_key_values=past,
            use_cache=True,
            output_hidden_states=True,
            logits_to_keep=1,
        )
        hs = out.hidden_states
        # x^0..x^{L-1} from hidden_states, x^L from the hook (pre final norm).
        resid = torch.stack([h[0, -1] for h in hs[:-1]] + [parts.last_block_out[0]])
        final = hs[-1][:, -1]  # [1, D], after the final norm
        logits = out.logits[:, -1]  # [1, V]
        if check:
            assert len(hs) == parts.n_layers + 1
            torch.testing.assert_close(parts.norm(resid[-1]), final[0], rtol=tol, atol=tol)
            torch.testing.assert_close(parts.head(final), logits, rtol=tol, atol=tol)
        return out.past_key_values, resid, final, logits

    # 1. prefix
    prefix = torch.tensor(
        [list(spec["prompt_ids"]) + [spec["start"]]], dtype=torch.long, device=device
    )
    past, resid, final, logits = forward(embed(prefix), None)
    if on_prefix is not None:
        on_prefix()

    # 2. continuous thoughts
    for _ in range(spec["thoughts"]):
        resids.append(resid)
        past, resid, final, logits = forward(final.unsqueeze(1), past)

    # 3. end marker: the answer's first step
    end = torch.tensor([[spec["end"]]], dtype=torch.long, device=device)
    past, resid, final, logits = forward(embed(end), past)

    # 4. greedy answer, exactly answer_tokens tokens
    answer = []
    n = spec["answer_tokens"]
    for i in range(n):
        resids.append(resid)
        tok = logits.argmax(-1)  # [1]
        answer.append(tok)
        if i + 1 < n:
            past, resid, final, logits = forward(embed(tok.unsqueeze(0)), past)

    # 5. logit lens over every step and layer, batched
    r = torch.stack(resids)  # [S, L+1, D]
    lens_logits = parts.head(parts.norm(r)).float()  # [S, L+1, V]
    probs = torch.softmax(lens_logits, dim=-1)
    top_p, top_i = probs.topk(spec["top_k"], dim=-1)
    entropy = torch.special.entr(probs[:, -1]).sum(-1)  # [S], nats
    r64 = r.double()
    cos = torch.nn.functional.cosine_similarity(r64[:, :-1], r64[:, 1:], dim=-1)
    angular = torch.arccos(cos.clamp(-1.0, 1.0)) / math.pi  # [S, L]

    result = {
        "answer_ids": torch.cat(answer).tolist(),
        "top_ids": top_i.tolist(),
        "top_probs": top_p.tolist(),
        "entropy": entropy.tolist(),
        "angular": angular.tolist(),
    }
    if check and tol == 1e-4:
        # The layer-L lens of an answer step is the model's own next-token distribution (in
        # bf16 the batched lens may break a near-tie the other way, so f32 only).
        assert result["answer_ids"] == [row[-1][0] for row in result["top_ids"][-n:]], (
            result["answer_ids"],
            [row[-1][0] for row in result["top_ids"][-n:]],
        )
    return result


def main():
    ap = argparse.ArgumentParser(
        description="Time the Coconut pipeline (prefix, thoughts, answer, logit lens) in PyTorch."
    )
    ap.add_argument("model_dir", help="HF GPT-2 or Llama folder (config.json + model.safetensors)")
    ap.add_argument("--inputs", help="JSON file with prompt_ids, start, end, latent, thoughts, answer_tokens, top_k")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up (default 5)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu (default) or cuda (device 0)")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="f32 (default) or bf16")
    args = ap.parse_args()
    if args.runs < 1 or args.threads < 1:
        sys.exit("error: --runs and --threads must be at least 1")

    # Anything libraries print goes to stderr; stdout carries only the JSON line.
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM

        torch.set_num_threads(args.threads)
        if args.device == "cuda" and not torch.cuda.is_available():
            sys.exit("error: --device cuda but torch sees no CUDA device")
        device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]

        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        config = AutoConfig.from_pretrained(args.model_dir)
        if config.model_type not in ("gpt2", "llama"):
            log(f"warning: model_type {config.model_type!r} is neither gpt2 nor llama; trying anyway")
        spec = load_inputs(args.inputs, config.vocab_size)
        context = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings")
        needed = len(spec["prompt_ids"]) + 1 + spec["thoughts"] + spec["answer_tokens"]
        if needed > context:
            sys.exit(f"error: the run needs {needed} positions, more than the context of {context}")

        t0 = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(
            args.model_dir, attn_implementation="eager", dtype=dtype
        )
        model.to(device)
        model.eval()
        parts = Parts(model)
        log(
            f"loaded {config.model_type} ({parts.n_layers} layers, d={config.hidden_size}, "
            f"V={config.vocab_size}) in {time.perf_counter() - t0:.1f} s; "
            f"prompt {len(spec['prompt_ids'])} ids, {spec['thoughts']} thoughts, "
            f"{spec['answer_tokens']} answer tokens, top-{spec['top_k']}, {args.threads} threads, "
            f"{args.device} {args.dtype}"
        )

        with torch.inference_mode():
            t = time.perf_counter()
            warm = pipeline(parts, spec, check=True)
            log(f"warm-up {1000 * (time.perf_counter() - t):.1f} ms (checks passed); answer ids {warm['answer_ids']}")
            times, prefix_times = [], []
            for k in range(args.runs):
                sync()
                t = time.perf_counter()

                def prefix_done():
                    sync()
                    prefix_times.append(1000 * (time.perf_counter() - t))

                res = pipeline(parts, spec, on_prefix=prefix_done)
                sync()
                ms = 1000 * (time.perf_counter() - t)
                times.append(ms)
                log(f"run {k + 1}/{args.runs}: {ms:.1f} ms")
                if res["answer_ids"] != warm["answer_ids"]:
                    log("warning: the answer differs from the warm-up run's")

    out = {
        "pipeline_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "prefix_ms": round(statistics.median(prefix_times), 1),
        "max_ms": round(max(times), 1),
        "runs": args.runs,
        "threads": args.threads,
        "device": args.device,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "dtype": args.dtype,
        "model_type": config.model_type,
        "steps": spec["thoughts"] + spec["answer_tokens"],
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
    }
    print(json.dumps(out), file=real_stdout, flush=True)


if __name__ == "__main__":
    main()
