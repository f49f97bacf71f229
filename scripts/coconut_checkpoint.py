#!/usr/bin/env python3
"""Write a model folder's weights as a checkpoint of the official Coconut code.

facebookresearch/coconut saves ``torch.save(Coconut(model).state_dict(), "checkpoint_N")``: every
key of the Hugging Face model under ``base_causallm.``, plus ``embedding.weight``, the input
embedding itself. Tied weights stay one storage, as in the real files (``lm_head.weight`` of a tied
GPT-2 or Llama is the embedding). ``cargo bench --bench checkpoint`` uses this on its random
GPT-2-124M-shaped folder to measure the memory of reading a large checkpoint.

Usage::

    python scripts/coconut_checkpoint.py MODEL_DIR OUT_FILE [--no-embedding-key] [--bf16]
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import load_file


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    folder, out = Path(args[0]), Path(args[1])
    cfg = json.loads((folder / "config.json").read_text())
    weights = load_file(folder / "model.safetensors")
    if "--bf16" in sys.argv:
        weights = {k: v.to(torch.bfloat16) for k, v in weights.items()}
    embed_key = "transformer.wte.weight" if cfg["model_type"] == "gpt2" else "model.embed_tokens.weight"
    embedding = weights[embed_key]
    if cfg.get("tie_word_embeddings", True) and "lm_head.weight" not in weights:
        weights["lm_head.weight"] = embedding  # one storage, as torch.save writes tied weights
    state = OrderedDict((f"base_causallm.{k}", v) for k, v in weights.items())
    if "--no-embedding-key" not in sys.argv:
        state["embedding.weight"] = embedding
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    print(json.dumps({"file": str(out), "bytes": out.stat().st_size, "tensors": len(state)}))


if __name__ == "__main__":
    main()
