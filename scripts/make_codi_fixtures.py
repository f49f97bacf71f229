#!/usr/bin/env python3
"""Tiny CODI checkpoints and a PyTorch reference of CODI's inference loop, for the coconut-lens tests.

CODI (Shen et al. 2025, arXiv 2502.21074, github.com/zhenyi4/codi) wraps a causal LM in a module with two
fields: ``codi``, the base model after ``resize_token_embeddings(vocab + 3)`` (pad, bot and eot ids are the
three new rows) and ``get_peft_model`` (LoRA adapters), and ``prj``, the projection a continuous thought
passes through before it is fed back: ``Sequential(Dropout, Linear(d, prj_dim), GELU, Linear(prj_dim, d))``
plus ``ln = LayerNorm(d)`` unless ``prj_no_ln``. Its trainer saves that module's ``state_dict()``
(``pytorch_model.bin`` with ``--save_safetensors False``, as the published checkpoints are, else
``model.safetensors``). This script builds such checkpoints with random weights on the tiny base folders of
``make_fixtures.py`` and records what CODI's ``test.py`` computes for them.

Written (nothing else is touched; the base folders are only read):

``tests/fixtures/models/gpt2-tiny-codi/pytorch_model.bin``
    on ``gpt2-tiny-base`` (tied head): LoRA r 4 on ``c_attn``, ``c_proj``, ``c_fc`` with lora_alpha 32 (the
    value of CODI's published scripts, coconut-lens's default), projection 32 -> 48 -> 32 with LayerNorm.
``tests/fixtures/models/llama-tiny-codi/model.safetensors``, ``adapter_config.json``
    on ``llama-tiny-base`` (untied head): LoRA r 8 on all seven projections with lora_alpha 16 (recorded in
    peft's ``adapter_config.json``), projection 32 -> 40 -> 32 without LayerNorm (``prj_no_ln``).
``tests/fixtures/golden/<name>.json``
    in the format of ``make_fixtures.py``'s golden files (see tests/fixtures/README.md), one run per case.

The reference loop is CODI's ``test.py`` with ``remove_eos`` (both published checkpoints) and greedy
decoding: ``input_ids = tokenizer(question) + [bot]``; the last position's ``hidden_states[-1]`` (after the
final norm) goes through ``prj`` and is fed as the next input embedding, N times, each with the KV cache;
then the eot embedding; then greedy tokens (argmax over all ids but the last, eot, as their
``logits[:, -1, :vocab_size - 1]``), each token's embedding fed back, stopping after the eos id. The
question is ``question.strip().replace("  ", " ")``. Thought k is read at the position where its hidden
state was computed (bot for k = 1), before the projection: the logit lens there at layer L is CODI's own
probe, ``softmax(lm_head(hidden_states[-1]))``.

Usage, from the repository root, with the fixture virtualenv (scripts/requirements-fixtures.txt)::

    ~/.venvs/coconut-fixtures/bin/python scripts/make_codi_fixtures.py
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import peft
import safetensors.torch
import torch
import transformers
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer
from transformers import GPT2LMHeadModel, LlamaForCausalLM

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "tests" / "fixtures" / "models"
GOLDEN_DIR = ROOT / "tests" / "fixtures" / "golden"

# Random weights as make_fixtures.py draws them, LoRA matrices smaller so that the adapters perturb the
# base instead of replacing it.
MATRIX_STD, NORM_STD, BIAS_STD, LORA_STD = 0.37, 0.1, 0.1, 0.1

# The Rust tests compare probabilities within 1e-4 and ids exactly: no recorded ranking may be a near-tie.
MIN_RANK_GAP = 1e-5
MIN_GREEDY_MARGIN = 1e-4
MIN_ARGMIN_GAP = 1e-6

FIXTURES = [
    {
        "name": "gpt2-tiny-codi",
        "base": "gpt2-tiny-base",
        "file": "pytorch_model.bin",
        "seed": 12,
        "lora_r": 4,
        "lora_alpha": 32,
        "targets": ["c_attn", "c_proj", "c_fc"],
        "prj_dim": 48,
        "prj_ln": True,
    },
    {
        "name": "llama-tiny-codi",
        "base": "llama-tiny-base",
        "file": "model.safetensors",
        "seed": 11,
        "lora_r": 8,
        "lora_alpha": 16,
        "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"],
        "prj_dim": 40,
        "prj_ln": False,
        "adapter_config": True,
    },
]

CASES = [
    ("t6", 6, "Every wumpus is a yumpus. Every yumpus is a gorpus. Alex is a wumpus. Is Alex a gorpus or lempus?"),
    ("t2", 2, "  Each tumpus is a rompus.  Tom is a tumpus. True or false: Tom is a rompus. "),
    ("t1", 1, "Every dumpus is a numpus. Sally is a dumpus. Is Sally a numpus or lorpus?"),
    ("t0", 0, "Every impus is a zumpus. Max is an impus. Is Max a zumpus?"),
]  # fmt: skip
MAX_NEW_TOKENS = 8


class CodiShell(torch.nn.Module):
    """The parameter layout of CODI's ``CODI`` module (``codi`` and ``prj``); the loop is in `run_case`."""

    def __init__(self, base: torch.nn.Module, fx: dict):
        super().__init__()
        vocab = base.config.vocab_size
        self.pad_id, self.bot_id, self.eot_id = vocab, vocab + 1, vocab + 2
        base.resize_token_embeddings(vocab + 3, mean_resizing=False)
        lora = LoraConfig(
            task_type=peft.TaskType.CAUSAL_LM,
            r=fx["lora_r"],
            lora_alpha=fx["lora_alpha"],
            lora_dropout=0.1,
            target_modules=fx["targets"],
            init_lora_weights=True,
        )
        self.codi = get_peft_model(base, lora)
        d = base.config.hidden_size
        self.prj = torch.nn.Sequential(
            torch.nn.Dropout(0.0),
            torch.nn.Linear(d, fx["prj_dim"]),
            torch.nn.GELU(),
            torch.nn.Linear(fx["prj_dim"], d),
        )
        if fx["prj_ln"]:
            self.prj.add_module("ln", torch.nn.LayerNorm(d))

    def embed(self, ids: list[int]) -> torch.Tensor:
        return self.codi.get_input_embeddings()(torch.tensor([ids]))


def build_shell(fx: dict) -> CodiShell:
    base_dir = MODELS_DIR / fx["base"]
    config = transformers.AutoConfig.from_pretrained(base_dir)
    cls = GPT2LMHeadModel if config.model_type == "gpt2" else LlamaForCausalLM
    torch.manual_seed(fx["seed"])
    model = cls(config)
    model.set_attn_implementation("eager")
    return CodiShell(model, fx).eval()


def randomize_(shell: CodiShell, seed: int) -> None:
    """Every parameter (tied ones once), the LoRA adapters included: a zero lora_B would hide the merge."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in shell.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
            if "lora_" in name:
                param.copy_(LORA_STD * noise)
            elif name.endswith(".bias"):
                param.copy_(BIAS_STD * noise)
            elif param.ndim == 1:
                param.copy_(1.0 + NORM_STD * noise)
            else:
                param.copy_(MATRIX_STD * noise)


class Recorder:
    """Hooks on the base model: x^0 (block 0's input) and x^{l+1} (block l's output) of every forward."""

    def __init__(self, shell: CodiShell):
        model = shell.codi.get_base_model()
        if isinstance(model, GPT2LMHeadModel):
            self.blocks, self.final_norm = list(model.transformer.h), model.transformer.ln_f
        else:
            self.blocks, self.final_norm = list(model.model.layers), model.model.norm
        self.lm_head = model.lm_head
        self.n_layers = len(self.blocks)
        self.resid: list[torch.Tensor | None] = [None] * (self.n_layers + 1)
        self.blocks[0].register_forward_pre_hook(self._pre, with_kwargs=True)
        for layer, block in enumerate(self.blocks):
            block.register_forward_hook(self._post(layer))

    def _pre(self, module, args, kwargs):
        self.resid[0] = args[0] if args else kwargs["hidden_states"]

    def _post(self, layer):
        def hook(module, args, output):
            self.resid[layer + 1] = output[0] if isinstance(output, tuple) else output

        return hook

    def last_row(self) -> list[torch.Tensor]:
        """x^0..x^L at the last position of the latest forward."""
        return [x[0, -1].clone() for x in self.resid]


class Checks:
    def __init__(self):
        self.min_rank_gap = math.inf
        self.min_margin = math.inf
        self.failures: list[str] = []

    def top5(self, logits: torch.Tensor, where: str) -> tuple[list[int], list[float]]:
        probs = torch.softmax(logits.float(), dim=-1)
        vals, ids = probs.topk(6)
        vals = vals.tolist()
        gap = min(vals[i] - vals[i + 1] for i in range(5))
        self.min_rank_gap = min(self.min_rank_gap, gap)
        if gap <= MIN_RANK_GAP:
            self.failures.append(f"near-tie in the top 6 at {where}: {vals}")
        return ids[:5].tolist(), vals[:5]

    def greedy(self, logits: torch.Tensor, where: str) -> int:
        vals, ids = torch.softmax(logits.float(), dim=-1).topk(2)
        margin = float(vals[0] - vals[1])
        self.min_margin = min(self.min_margin, margin)
        if margin <= MIN_GREEDY_MARGIN:
            self.failures.append(f"greedy margin {margin} at {where}")
        return int(ids[0])

    def argmin(self, values: list[float], where: str) -> int:
        best = min(range(len(values)), key=lambda i: values[i])
        others = [v for i, v in enumerate(values) if i != best]
        if others and min(others) - values[best] <= MIN_ARGMIN_GAP:
            self.failures.append(f"argmin near-tie at {where}: {values}")
        return best


def entropy(logits: torch.Tensor) -> float:
    logp = torch.log_softmax(logits.double(), dim=-1)
    return float(-(logp.exp() * logp).sum())


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    cos = float(a @ b / (a.norm() * b.norm()))
    return math.acos(max(-1.0, min(1.0, cos))) / math.pi


def step_record(rec: Recorder, position: int, resid: list[torch.Tensor], logits, checks: Checks, where: str):
    """The lens of one position: softmax(lm_head(final_norm(x^l))), layer L the model's own logits."""
    lens = []
    for layer in range(rec.n_layers + 1):
        layer_logits = logits if layer == rec.n_layers else rec.lm_head(rec.final_norm(resid[layer]))
        ids, probs = checks.top5(layer_logits, f"{where} layer {layer}")
        lens.append({"layer": layer, "ids": ids, "probs": probs})
    return {
        "position": position,
        "entropy": entropy(logits),
        "lens": lens,
        "angular": [angle(a, b) for a, b in itertools.pairwise(resid)],
    }


def run_case(shell: CodiShell, rec: Recorder, tok: Tokenizer, case, checks: Checks, where: str) -> dict:
    """CODI's test.py for one question (batch of one, remove_eos, greedy)."""
    name, n_thoughts, question = case
    codi, vocab = shell.codi, shell.eot_id + 1
    eos = codi.config.eos_token_id
    input_ids = tok.encode(question.strip().replace("  ", " "), add_special_tokens=True).ids + [shell.bot_id]
    where = f"{where}/{name}"
    with torch.no_grad():
        out = codi(input_ids=torch.tensor([input_ids]), use_cache=True, output_hidden_states=True)
        pkv, position = out.past_key_values, len(input_ids) - 1
        thoughts, thought_resid = [], []
        for k in range(1, n_thoughts + 1):
            hidden = out.hidden_states[-1][:, -1:, :]  # what prj reads: after the final norm
            logits = out.logits[0, -1]
            # The lens's last layer is CODI's probe: lm_head of that same hidden state.
            torch.testing.assert_close(rec.lm_head(hidden[0, 0]), logits, rtol=1e-5, atol=1e-5)
            resid = rec.last_row()
            thoughts.append({"index": k, **step_record(rec, position, resid, logits, checks, f"{where} T{k}")})
            thought_resid.append(resid)
            latent = shell.prj(hidden)
            out = codi(inputs_embeds=latent, past_key_values=pkv, use_cache=True, output_hidden_states=True)
            pkv, position = out.past_key_values, position + 1
        out = codi(inputs_embeds=shell.embed([shell.eot_id]), past_key_values=pkv, use_cache=True)
        pkv, position = out.past_key_values, position + 1
        answer_first = step_record(rec, position, rec.last_row(), out.logits[0, -1], checks, f"{where} answer")
        answer_ids = []
        for i in range(MAX_NEW_TOKENS):
            token = checks.greedy(out.logits[0, -1, : vocab - 1], f"{where} answer token {i}")
            answer_ids.append(token)
            if token == eos or i + 1 == MAX_NEW_TOKENS:
                break
            out = codi(inputs_embeds=shell.embed([token]), past_key_values=pkv, use_cache=True)
            pkv = out.past_key_values
    record = {
        "name": name,
        "prompt": question,
        "thoughts": n_thoughts,
        "ablate_heads": [],
        "ablate_layers": [],
        "top_k": 5,
        "max_new_tokens": MAX_NEW_TOKENS,
        "input_ids": input_ids + [shell.eot_id],
        "thought_steps": thoughts,
        "answer_first": answer_first,
        "answer_ids": answer_ids,
    }
    if n_thoughts:
        record["blocks"] = blocks(rec.n_layers, thought_resid, checks, where)
    return record


def blocks(n_layers: int, resids: list[list[torch.Tensor]], checks: Checks, where: str) -> list[dict]:
    out = []
    for n in range(1, n_layers):
        dists = [sum(angle(r[s], r[s + n]) for r in resids) / len(resids) for s in range(n_layers - n + 1)]
        best = checks.argmin(dists, f"{where} blocks n={n}")
        out.append({"n": n, "start": best, "distance": dists[best]})
    return out


def save_checkpoint(shell: CodiShell, path: Path) -> None:
    """What CODI's trainer writes: the wrapper's whole state dict under its own key names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = shell.state_dict()
    if path.suffix == ".safetensors":
        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, path, metadata={"format": "pt"})
    else:
        torch.save(state, path)


def load_checkpoint(path: Path) -> dict:
    if path.suffix == ".safetensors":
        return safetensors.torch.load_file(path)
    return torch.load(path, weights_only=True)


def golden_json(obj) -> str:
    """As make_fixtures.py writes them: numeric arrays on one line, floats to 9 significant digits."""

    def rounded(x):
        if isinstance(x, float):
            return float(f"{x:.9g}")
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        if isinstance(x, list):
            return [rounded(v) for v in x]
        return x

    text = json.dumps(rounded(obj), indent=1)
    text = re.sub(
        r"\[([-+.,\deE\s]*)\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)).replace(",", ", ") + "]", text
    )
    return text + "\n"


def make(fx: dict) -> Checks:
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    shell = build_shell(fx)
    randomize_(shell, fx["seed"])
    ckpt = MODELS_DIR / fx["name"] / fx["file"]
    save_checkpoint(shell, ckpt)
    if fx.get("adapter_config"):
        # peft's adapter_config.json, with the fields that decide the merge (LoraConfig's own file
        # would hold this machine's paths and an unordered target list).
        lora = shell.codi.peft_config["default"]
        config = {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": lora.r,
            "lora_alpha": lora.lora_alpha,
            "target_modules": sorted(lora.target_modules),
            "use_rslora": lora.use_rslora,
            "use_dora": lora.use_dora,
            "fan_in_fan_out": lora.fan_in_fan_out,
        }
        (ckpt.parent / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        assert LoraConfig.from_pretrained(str(ckpt.parent)).lora_alpha == fx["lora_alpha"]

    # The reference runs on what CODI's test.py builds: a fresh wrapper with the checkpoint loaded into it.
    fresh = build_shell(fx)
    state = load_checkpoint(ckpt)
    assert all(k.startswith(("codi.base_model.model.", "prj.")) for k in state), sorted(state)[:5]
    fresh.load_state_dict(state, strict=True)
    fresh.codi.tie_weights()
    for (name, a), b in zip(shell.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name

    tok = Tokenizer.from_file(str(MODELS_DIR / fx["base"] / "tokenizer.json"))
    assert tok.get_vocab_size() == fresh.pad_id, "the base tokenizer's size is the config's vocab_size"
    rec, checks = Recorder(fresh), Checks()
    cases = [run_case(fresh, rec, tok, case, checks, fx["name"]) for case in CASES]
    if checks.failures:
        raise AssertionError("change a seed or a prompt:\n  " + "\n  ".join(checks.failures))
    golden = {
        "model": fx["name"],
        "codi": {k: fx[k] for k in ("base", "file", "lora_r", "lora_alpha", "targets", "prj_dim", "prj_ln")}
        | {"pad_id": fresh.pad_id, "bot_id": fresh.bot_id, "eot_id": fresh.eot_id},
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "peft_version": peft.__version__,
        "cases": cases,
    }
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    (GOLDEN_DIR / f"{fx['name']}.json").write_text(golden_json(golden))
    return checks


def main() -> None:
    for fx in FIXTURES:
        checks = make(fx)
        size = (MODELS_DIR / fx["name"] / fx["file"]).stat().st_size
        print(
            f"{fx['name']}: {size} bytes; smallest top-6 gap {checks.min_rank_gap:.2e}, "
            f"smallest greedy margin {checks.min_margin:.2e}"
        )


if __name__ == "__main__":
    main()
