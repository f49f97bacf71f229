#!/usr/bin/env python3
"""Checks that a coconut-lens model folder (e.g. the bundled assets/coconut-prosqa) loads
unchanged in Hugging Face transformers, and that a Coconut run in transformers agrees with
`coconut-lens analyze` on the same folder: same input ids, same greedy answer, and the answer's
first-token probabilities within 1e-4.

    python scripts/check_hf_model.py assets/coconut-prosqa [--prompt TEXT] [--thoughts N]

Needs torch and transformers (scripts/requirements-fixtures.txt) and a release build of the
binary (target/release/coconut-lens, or --binary).
"""

import argparse
import json
import pathlib
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=pathlib.Path)
    ap.add_argument("--prompt", help="default: demo_prompt of coconut-lens.json")
    ap.add_argument("--thoughts", type=int, help="default: thoughts of coconut-lens.json")
    ap.add_argument("--binary", default="target/release/coconut-lens")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args()

    meta_path = args.model_dir / "coconut-lens.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    prompt = args.prompt or meta.get("demo_prompt")
    thoughts = args.thoughts if args.thoughts is not None else meta.get("thoughts", 6)
    if not prompt:
        sys.exit("no --prompt and no demo_prompt in coconut-lens.json")

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        args.model_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(args.model_dir / "tokenizer.json"))
    start, end = tok.convert_tokens_to_ids(["<|start-latent|>", "<|end-latent|>"])
    eos = model.config.eos_token_id

    ids = tok.encode(prompt + "\n") + [start]
    with torch.inference_mode():
        out = model(torch.tensor([ids]), use_cache=True, output_hidden_states=True)
        for _ in range(thoughts):
            # hidden_states[-1] is after the final norm: exactly what the LM head sees.
            h = out.hidden_states[-1][:, -1:]
            out = model(
                inputs_embeds=h,
                past_key_values=out.past_key_values,
                use_cache=True,
                output_hidden_states=True,
            )
        out = model(
            torch.tensor([[end]]),
            past_key_values=out.past_key_values,
            use_cache=True,
            output_hidden_states=True,
        )
        first = torch.softmax(out.logits[0, -1], -1)
        answer = []
        for _ in range(args.max_new_tokens):
            nxt = int(out.logits[0, -1].argmax())
            answer.append(nxt)
            if nxt == eos:
                break
            out = model(
                torch.tensor([[nxt]]),
                past_key_values=out.past_key_values,
                use_cache=True,
                output_hidden_states=True,
            )

    res = subprocess.run(
        [
            args.binary, "analyze", "--model", str(args.model_dir), "--prompt", prompt,
            "--thoughts", str(thoughts), "--max-new-tokens", str(args.max_new_tokens),
        ],
        capture_output=True, text=True, check=False,
    )
    if res.returncode != 0:
        sys.exit(f"coconut-lens analyze failed: {res.stderr.strip()}")
    doc = json.loads(res.stdout)

    problems = []
    rust_input = [t["id"] for t in doc["tokens"]]
    if rust_input[: len(ids)] != ids:
        problems.append(f"input ids differ: {rust_input[:len(ids)]} vs {ids}")
    if doc["answer"]["ids"] != answer:
        problems.append(f"answers differ: {doc['answer']['ids']} vs {answer}")
    worst = 0.0
    for t in doc["answer"]["first"]["lens"][-1]["top"]:
        worst = max(worst, abs(t["prob"] - float(first[t["id"]])))
    if worst > 1e-4:
        problems.append(f"answer-first probabilities differ by {worst:.2e}")
    print(
        json.dumps(
            {
                "model": str(args.model_dir),
                "transformers_answer": tok.decode(answer, skip_special_tokens=True),
                "coconut_lens_answer": doc["answer"]["text"],
                "max_prob_diff": worst,
                "ok": not problems,
            }
        )
    )
    for p in problems:
        print(f"MISMATCH: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
