#!/usr/bin/env python3
"""Generate the tiny model fixtures and golden reference outputs used by the coconut-lens tests.

Everything is written under ``tests/fixtures/`` and is fully deterministic (fixed seeds, f32 on CPU,
two threads, deterministic algorithms).

``tests/fixtures/models/<name>/``
    Tiny random Hugging Face checkpoints written by ``save_pretrained`` (safetensors) plus a byte-level BPE
    ``tokenizer.json`` trained here with ``tokenizers`` on a small synthetic ProsQA/ProntoQA-like corpus.

    gpt2-tiny           GPT2LMHeadModel: 3 layers, 4 heads, d=32, tied LM head, with the Coconut tokens.
    gpt2-tiny-noprefix  the same weights saved through GPT2Model (tensor names without ``transformer.``).
    llama-tiny-gqa      LlamaForCausalLM: 3 layers, 4 heads, 2 KV heads, head_dim 16, untied LM head,
                        llama3 RoPE scaling; config in the old ``rope_scaling`` + ``rope_theta`` style.
    llama-tiny-tied     LlamaForCausalLM: 2 layers, 4 heads, tied embeddings, no ``head_dim`` key;
                        config in the new ``rope_parameters`` style.
    gpt2-tiny-base, llama-tiny-base
                        the gpt2-tiny / llama-tiny-gqa architectures without the Coconut tokens (vocab 3
                        smaller) and with other random weights: the model a Coconut training run starts from.
    gpt2-tiny-coconut-ckpt/checkpoint_2, llama-tiny-coconut-ckpt/checkpoint_1
                        ``torch.save(state_dict)`` of the ``Coconut`` wrapper of facebookresearch/coconut
                        (``base_causallm.*`` + ``embedding.weight``) holding the gpt2-tiny / llama-tiny-gqa
                        weights: base + 3 Coconut tokens + this state dict == gpt2-tiny / llama-tiny-gqa.

    gpt2-tiny-coconut-noemb/checkpoint_2
                        the gpt2-tiny state dict without ``embedding.weight`` (only ``base_causallm.*``).
    llama-tiny-tied-coconut/checkpoint_1, llama-tiny-tied-coconut/base/
                        a Llama-3.2-1B-style checkpoint (tied embeddings, llama3 RoPE) of the llama-tiny-tied
                        weights without ``embedding.weight``, with a base of only ``config.json`` (vocab 360)
                        and the tokenizer without the Coconut tokens, as a Coconut run starts from.
    malicious-ckpt/checkpoint_1
                        a zip-format checkpoint whose pickle calls ``os.system`` (``touch coconut-lens-pwned``)
                        when unpickled normally. It is written with ``pickle.dumps`` (which runs nothing) and
                        only inspected statically here; ``torch.load(weights_only=True)`` refuses it.
    ``make_fixtures.py --checkpoints-only`` writes only these three, from the committed models.

``tests/fixtures/golden/<model>.json`` for gpt2-tiny, llama-tiny-gqa and llama-tiny-tied
    Reference Coconut inference runs computed with transformers (eager attention, f32): logit lens, entropy,
    angular and block distances, greedy answers, attention probabilities and head importance, with and
    without head/layer ablations.  The format is documented in ``tests/fixtures/README.md``.

``tests/fixtures/golden/<model>.interventions.json`` for gpt2-tiny and llama-tiny-gqa
    Coconut runs whose thought slots receive zeros or a second prompt's thoughts (``analyze
    --intervene T2=zero`` / ``T1=patch --patch-prompt``): greedy answers and first-token probabilities.
    ``make_fixtures.py --interventions-only`` writes only these, from the committed models.

Usage, from the repository root (any virtualenv location outside the repository works)::

    python3 -m venv ~/.venvs/coconut-fixtures
    ~/.venvs/coconut-fixtures/bin/pip install -r scripts/requirements-fixtures.txt
    ~/.venvs/coconut-fixtures/bin/python scripts/make_fixtures.py

The script re-creates ``tests/fixtures/models`` and ``tests/fixtures/golden`` from scratch, checks the saved
files by loading them back with transformers, and fails if any recorded ranking is too close to a tie to be
compared robustly (then change a prompt or a seed).
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import os
import pickle
import pickletools
import random
import re
import shutil
import sys
import time
import zipfile
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MODELS_DIR = FIXTURES / "models"
GOLDEN_DIR = FIXTURES / "golden"

COCONUT_TOKENS = ["<|start-latent|>", "<|end-latent|>", "<|latent|>"]  # appended in this order
BASE_VOCAB = 360  # size of the tokenizers without Coconut tokens (their own special tokens included)
SIZE_LIMIT = 2_500_000  # bytes, all fixtures together (the extra checkpoint layouts take 0.37 MB)

# Random weights: matrices ~ N(0, MATRIX_STD^2), norm weights 1 + N(0, NORM_STD^2), biases N(0, BIAS_STD^2).
MATRIX_STD = 0.37
NORM_STD = 0.1
BIAS_STD = 0.1

# Weight seeds (chosen so that no recorded ranking of the golden cases is a near-tie).
SEEDS = {"gpt2-tiny": 1, "gpt2-tiny-base": 2, "llama-tiny-gqa": 3, "llama-tiny-tied": 8, "llama-tiny-base": 5}

# Robustness thresholds (the Rust tests compare probabilities with a 1e-4 tolerance and ids exactly).
MIN_RANK_GAP = 1e-5  # between consecutive probabilities among the top 6 of every recorded top-5 list
MIN_GREEDY_MARGIN = 1e-4  # top-1 minus top-2 probability at every greedily generated token
MIN_ARGMIN_GAP = 1e-6  # between the best and second best start layer of every block distance


# --------------------------------------------------------------------------------------------------------
# Synthetic corpus
# --------------------------------------------------------------------------------------------------------

NAMES = ["Alex", "Tom", "Sally", "Max", "Rex", "Fae", "Polly", "Wren", "Stella", "Sam", "Jack", "Bob"]
CONCEPTS = [
    "wumpus", "yumpus", "zumpus", "dumpus", "rompus", "numpus", "tumpus", "vumpus", "impus", "jompus",
    "gorpus", "lempus", "zhorpus", "lorpus", "brimpus", "shumpus", "sterpus", "grimpus", "boompus",
    "gwompus", "scrompus", "yimpus",
]  # fmt: skip
ADJECTIVES = [
    "bitter", "sweet", "small", "large", "happy", "sad", "bright", "dull", "red", "blue", "wooden",
    "metallic", "cold", "hot", "fast", "slow", "kind", "mean",
]  # fmt: skip


def build_corpus(n_docs: int = 160, seed: int = 0) -> list[str]:
    """ProsQA/ProntoQA-like toy documents: a shuffled chain of rules, a fact, a question and an answer."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        name = rng.choice(NAMES)
        chain = rng.sample(CONCEPTS, 4)
        other = rng.choice([c for c in CONCEPTS if c not in chain])
        adjective = rng.choice(ADJECTIVES)
        rules = [f"{rng.choice(['Every', 'Each'])} {a} is a {b}." for a, b in itertools.pairwise(chain)]
        rules.append(f"Every {chain[-1]} is {adjective}.")
        rules.append(f"{rng.choice(['Every', 'Each'])} {other} is not {adjective}.")
        rng.shuffle(rules)
        lines = rules + [f"{name} is a {chain[0]}."]
        if rng.random() < 0.5:
            options = [chain[-1], other]
            rng.shuffle(options)
            lines += [f"Is {name} a {options[0]} or {options[1]}?", f"### {name} is a {chain[-1]}."]
        else:
            lines += [f"True or false: {name} is {adjective}.", "### True."]
        docs.append("\n".join(lines))
    return docs


# Prompts used by the golden cases (one per case; words from the corpus).
PROMPTS = {
    "t0_plain": (
        "Every wumpus is a yumpus. Every yumpus is a gorpus. Each lempus is a zhorpus. "
        "Alex is a wumpus. Is Alex a gorpus or zhorpus?"
    ),
    "t0_ablate": (
        "Each tumpus is a rompus. Every rompus is bitter. Every impus is not bitter. "
        "Tom is a tumpus. True or false: Tom is bitter."
    ),
    "t1_plain": (
        "Every dumpus is a numpus. Every numpus is a jompus. Sally is a dumpus. Is Sally a jompus or lorpus?"
    ),
    "t4_plain": (
        "Every brimpus is a shumpus. Each shumpus is a sterpus. Every sterpus is a grimpus. "
        "Max is a brimpus. Is Max a grimpus or boompus?"
    ),
    "t4_ablate": (
        "Each vumpus is a gwompus. Every gwompus is a scrompus. Every yimpus is small. "
        "Polly is a vumpus. Is Polly a scrompus or yimpus?"
    ),
    "t4_hi": (
        "Every zumpus is a lempus. Every lempus is a wumpus. Each gorpus is not sad. "
        "Rex is a zumpus. Is Rex a wumpus or gorpus?"
    ),
    "t0_hi": (
        "Every jompus is a tumpus. Each tumpus is happy. Every impus is not happy. "
        "Wren is a jompus. True or false: Wren is happy."
    ),
}


# --------------------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------------------


def train_byte_level_bpe(corpus: list[str], vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenizer and decoder, no prefix space)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text can be encoded
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    assert tok.get_vocab_size() == vocab_size, f"BPE trained only {tok.get_vocab_size()} tokens"
    return tok


def gpt2_tokenizer(corpus: list[str]) -> Tokenizer:
    """GPT-2 style: `<|endoftext|>` (bos = eos) is the last id of the base vocab; nothing is prepended."""
    tok = train_byte_level_bpe(corpus, BASE_VOCAB - 1, special_tokens=[])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


def llama_tokenizer(corpus: list[str]) -> Tokenizer:
    """Llama style: `<s>` (id 0) is prepended when add_special_tokens=True, `</s>` (id 1) is the EOS."""
    tok = train_byte_level_bpe(corpus, BASE_VOCAB, special_tokens=["<s>", "</s>"])
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return tok


def with_coconut_tokens(tok: Tokenizer) -> Tokenizer:
    tok = Tokenizer.from_str(tok.to_str())
    n = tok.get_vocab_size()
    tok.add_special_tokens(COCONUT_TOKENS)
    assert [tok.token_to_id(t) for t in COCONUT_TOKENS] == [n, n + 1, n + 2]
    return tok


# --------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------


def gpt2_config(vocab_size: int, eos_id: int) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=128,
        n_embd=32,
        n_layer=3,
        n_head=4,
        activation_function="gelu_new",
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )


def llama_gqa_config(vocab_size: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        rms_norm_eps=1e-5,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        # original_max_position_embeddings 16 puts the first frequency pair (wavelength 2*pi) in the smoothed
        # band and divides all the others by `factor`.
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    )


def llama_tied_config(vocab_size: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        rms_norm_eps=1e-5,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=1,
        # head_dim 8: wavelengths 2*pi, 62.8, 628, 6283 -> unchanged, smoothed, divided, divided.
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    )


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter (tied ones once) with peaked-but-finite random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
            if name.endswith(".bias"):
                param.copy_(BIAS_STD * noise)
            elif param.ndim == 1:  # LayerNorm / RMSNorm weight
                param.copy_(1.0 + NORM_STD * noise)
            else:
                param.copy_(MATRIX_STD * noise)


def new_model(cls, config, seed: int):
    torch.manual_seed(seed)
    model = cls(config).eval()
    model.set_attn_implementation("eager")
    randomize_(model, seed)
    return model


def load_model(path: Path):
    cls = (
        GPT2LMHeadModel
        if json.loads((path / "config.json").read_text())["model_type"] == "gpt2"
        else LlamaForCausalLM
    )
    return cls.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()


class CoconutShell(torch.nn.Module):
    """Parameter layout of the `Coconut` wrapper of facebookresearch/coconut (forward logic not needed)."""

    def __init__(self, base_causallm: torch.nn.Module):
        super().__init__()
        self.base_causallm = base_causallm
        self.embedding = base_causallm.get_input_embeddings()


def edit_config(path: Path, edit) -> None:
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    edit(cfg)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def to_old_rope_style(cfg: dict) -> None:
    """`rope_scaling` dict + top-level `rope_theta` (configs written by transformers < 5)."""
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = rope


def to_new_rope_style_without_head_dim(cfg: dict) -> None:
    """`rope_parameters` only (rope_theta inside) and no explicit head_dim."""
    assert "rope_theta" in cfg["rope_parameters"]
    cfg.pop("rope_theta", None)
    cfg.pop("rope_scaling", None)
    cfg.pop("head_dim", None)


def save_model(model, tok: Tokenizer, name: str, config_edit=None) -> Path:
    path = MODELS_DIR / name
    model.save_pretrained(path)
    tok.save(str(path / "tokenizer.json"))
    if config_edit is not None:
        edit_config(path, config_edit)
    assert model.config.vocab_size == tok.get_vocab_size()
    return path


# --------------------------------------------------------------------------------------------------------
# Coconut inference with hooks
# --------------------------------------------------------------------------------------------------------


class CoconutRunner:
    """Coconut inference on a HF causal LM, with head/layer interventions and residual-stream capture.

    Hooks (registered once):
      * block 0 pre-hook records x^0 (the embedding output: wte+wpe for GPT-2, embed_tokens for Llama);
      * every block's forward hook returns its input unchanged when the layer is skipped and records x^{l+1};
      * every attention output projection's pre-hook multiplies each head's slice of its input by `gates`;
      * the final norm's forward hook records what the LM head sees (used to recycle thoughts).
    """

    def __init__(self, model):
        self.model = model
        if isinstance(model, GPT2LMHeadModel):
            core = model.transformer
            self.blocks, self.final_norm = list(core.h), core.ln_f
            self.out_projs = [b.attn.c_proj for b in self.blocks]
        else:
            core = model.model
            self.blocks, self.final_norm = list(core.layers), core.norm
            self.out_projs = [b.self_attn.o_proj for b in self.blocks]
        self.n_layers = len(self.blocks)
        self.n_heads = model.config.num_attention_heads
        self.embed = model.get_input_embeddings()
        self.eos_id = model.config.eos_token_id

        self.gates: torch.Tensor | None = None  # [L, H] multipliers of the head outputs
        self.skip: set[int] = set()
        self.resid: list[torch.Tensor | None] = [None] * (self.n_layers + 1)
        self.final_hidden: torch.Tensor | None = None

        self.blocks[0].register_forward_pre_hook(self._record_embeddings)
        for layer, block in enumerate(self.blocks):
            block.register_forward_hook(self._block_hook(layer))
        for layer, proj in enumerate(self.out_projs):
            proj.register_forward_pre_hook(self._gate_hook(layer))
        self.final_norm.register_forward_hook(self._record_final_hidden)

    # hooks -------------------------------------------------------------------------------------------
    def _record_embeddings(self, module, args):
        self.resid[0] = args[0]

    def _block_hook(self, layer):
        def hook(module, args, output):
            out = args[0] if layer in self.skip else output
            self.resid[layer + 1] = out
            return out

        return hook

    def _gate_hook(self, layer):
        def hook(module, args):
            if self.gates is None:
                return None
            x = args[0]
            x = (x.unflatten(-1, (self.n_heads, -1)) * self.gates[layer][:, None]).flatten(-2)
            return (x,) + tuple(args[1:])

        return hook

    def _record_final_hidden(self, module, args, output):
        self.final_hidden = output

    # pipeline ----------------------------------------------------------------------------------------
    def set_interventions(self, gates: torch.Tensor | None, skip: set[int]) -> None:
        self.gates, self.skip = gates, set(skip)

    def forward(self, embeds: torch.Tensor, output_attentions: bool = False):
        return self.model(inputs_embeds=embeds, use_cache=False, output_attentions=output_attentions)

    def thought_embeddings(
        self, input_ids: list[int], n_thoughts: int, start_id: int | None, feed=None
    ) -> torch.Tensor:
        """Input embeddings with the latent slots replaced by recycled hidden states (full recompute).

        `feed[k](thought)`, when given for thought k (1-based), is what slot k receives instead."""
        embeds = self.embed(torch.tensor([input_ids]))
        if n_thoughts:
            s = input_ids.index(start_id)
            for k in range(1, n_thoughts + 1):
                self.forward(embeds[:, : s + k])
                thought = self.final_hidden[:, -1:]
                if feed and k in feed:
                    thought = feed[k](thought)
                embeds = torch.cat([embeds[:, : s + k], thought, embeds[:, s + k + 1 :]], dim=1)
        return embeds

    def lens_logits(self, layer: int, position: int, final_logits: torch.Tensor) -> torch.Tensor:
        if layer == self.n_layers:
            return final_logits[position]
        return self.model.lm_head(self.final_norm(self.resid[layer][0, position]))

    def answer_first_logits(self, input_ids, n_thoughts, start_id, gates, skip) -> torch.Tensor:
        self.set_interventions(gates, skip)
        embeds = self.thought_embeddings(input_ids, n_thoughts, start_id)
        return self.forward(embeds).logits[0, -1]


# --------------------------------------------------------------------------------------------------------
# Golden records
# --------------------------------------------------------------------------------------------------------


def float_list(t: torch.Tensor) -> list[float]:
    return [float(x) for x in t.reshape(-1).tolist()]


def entropy(logits: torch.Tensor) -> float:
    logp = torch.log_softmax(logits.double(), dim=-1)
    return float(-(logp.exp() * logp).sum())


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """arccos(cos(a, b)) / pi in float64."""
    a, b = a.double(), b.double()
    cos = float(a @ b / (a.norm() * b.norm()))
    return math.acos(max(-1.0, min(1.0, cos))) / math.pi


class Checks:
    """Collects robustness statistics and near-ties (reported all at once by `raise_if_failed`)."""

    def __init__(self):
        self.min_rank_gap = math.inf
        self.min_margin = math.inf
        self.max_probs: list[float] = []
        self.failures: list[str] = []

    def top5(self, logits: torch.Tensor, where: str) -> tuple[list[int], list[float]]:
        probs = torch.softmax(logits.float(), dim=-1)
        assert torch.isfinite(probs).all(), f"non-finite probabilities at {where}"
        top = probs.topk(6)
        vals = top.values.tolist()
        gap = min(vals[i] - vals[i + 1] for i in range(5))
        self.min_rank_gap = min(self.min_rank_gap, gap)
        if gap <= MIN_RANK_GAP:
            self.failures.append(f"near-tie in top-6 at {where}: {vals}")
        self.max_probs.append(vals[0])
        return top.indices[:5].tolist(), vals[:5]

    def greedy(self, logits: torch.Tensor, where: str) -> int:
        probs = torch.softmax(logits.float(), dim=-1)
        top = probs.topk(2)
        margin = float(top.values[0] - top.values[1])
        self.min_margin = min(self.min_margin, margin)
        if margin <= MIN_GREEDY_MARGIN:
            self.failures.append(f"greedy margin {margin} too small at {where}")
        return int(top.indices[0])

    def argmin(self, values: list[float], where: str) -> int:
        best = min(range(len(values)), key=lambda i: values[i])
        others = [v for i, v in enumerate(values) if i != best]
        if others and min(others) - values[best] <= MIN_ARGMIN_GAP:
            self.failures.append(f"argmin near-tie at {where}: {values}")
        return best

    def raise_if_failed(self) -> None:
        if self.failures:
            raise AssertionError("change the prompts or seeds:\n  " + "\n  ".join(self.failures))


def step_record(
    runner: CoconutRunner, position: int, logits: torch.Tensor, checks: Checks, where: str
) -> dict:
    lens = []
    for layer in range(runner.n_layers + 1):
        ids, probs = checks.top5(runner.lens_logits(layer, position, logits), f"{where} layer {layer}")
        lens.append({"layer": layer, "ids": ids, "probs": probs})
    resid = [x[0, position] for x in runner.resid]
    return {
        "position": position,
        "entropy": entropy(logits[position]),
        "lens": lens,
        "angular": [angle(a, b) for a, b in itertools.pairwise(resid)],
    }


def block_distances(runner: CoconutRunner, positions: list[int], checks: Checks, where: str) -> list[dict]:
    L = runner.n_layers
    blocks = []
    for n in range(1, L):
        dists = []
        for start in range(L - n + 1):
            d = [angle(runner.resid[start][0, p], runner.resid[start + n][0, p]) for p in positions]
            dists.append(sum(d) / len(d))
        best = checks.argmin(dists, f"{where} blocks n={n}")
        blocks.append({"n": n, "start": best, "distance": dists[best]})
    return blocks


def kl(logp_base: torch.Tensor, logits: torch.Tensor) -> float:
    logp = torch.log_softmax(logits.double(), dim=-1)
    return float((logp_base.exp() * (logp_base - logp)).sum())


def head_importance(runner, input_ids, n_thoughts, start_id, gates, skip, target, logits_base) -> dict:
    L, H = runner.n_layers, runner.n_heads
    logp_base = torch.log_softmax(logits_base.double(), dim=-1)
    with torch.no_grad():
        ablation = [[0.0] * H for _ in range(L)]
        for layer, head in itertools.product(range(L), range(H)):
            if gates[layer, head] != 0:  # heads ablated by the case stay at exactly 0
                g = gates.clone()
                g[layer, head] = 0.0
                logits = runner.answer_first_logits(input_ids, n_thoughts, start_id, g, skip)
                ablation[layer][head] = kl(logp_base, logits)
        layer_ablation = [0.0] * L
        for layer in range(L):
            if layer not in skip:  # layers skipped by the case stay at exactly 0
                logits = runner.answer_first_logits(input_ids, n_thoughts, start_id, gates, skip | {layer})
                layer_ablation[layer] = kl(logp_base, logits)

    xi = gates.clone().requires_grad_(True)
    with torch.enable_grad():
        logits = runner.answer_first_logits(input_ids, n_thoughts, start_id, xi, skip)
        loss = -torch.log_softmax(logits, dim=-1)[target]
        loss.backward()
    gradient = xi.grad.abs()
    runner.set_interventions(None, set())
    return {
        "target": target,
        "ablation": ablation,
        "gradient": [float_list(row) for row in gradient],
        "layer_ablation": layer_ablation,
    }


def run_case(model_name: str, runner: CoconutRunner, tok: Tokenizer, case: dict, checks: Checks) -> dict:
    name, n_thoughts = case["name"], case["thoughts"]
    L, H = runner.n_layers, runner.n_heads
    start_id, end_id, latent_id = (tok.token_to_id(t) for t in COCONUT_TOKENS)
    input_ids = tok.encode(case["prompt"] + "\n", add_special_tokens=True).ids
    if start_id is not None:
        input_ids += [start_id] + [latent_id] * n_thoughts + [end_id]
    else:
        assert n_thoughts == 0

    gates = torch.ones(L, H)
    for layer, head in case["ablate_heads"]:
        gates[layer, head] = 0.0
    skip = set(case["ablate_layers"])
    case_gates = gates if case["ablate_heads"] else None

    record = {key: case[key] for key in ("name", "prompt", "thoughts", "ablate_heads", "ablate_layers")}
    record.update(top_k=5, max_new_tokens=case["max_new_tokens"], input_ids=input_ids)

    with torch.no_grad():
        runner.set_interventions(case_gates, skip)
        embeds = runner.thought_embeddings(input_ids, n_thoughts, start_id)
        out = runner.forward(embeds, output_attentions=case.get("attention", False))
        logits = out.logits[0]
        T = len(input_ids)
        assert logits.shape[0] == T

        # Sanity: the final full forward reproduces the recycled thoughts (causality) and the LM-head input.
        s = input_ids.index(start_id) if n_thoughts else None
        for k in range(1, n_thoughts + 1):
            torch.testing.assert_close(
                runner.final_hidden[0, s + k - 1], embeds[0, s + k], rtol=1e-5, atol=1e-5
            )
        torch.testing.assert_close(
            runner.model.lm_head(runner.final_norm(runner.resid[L][0])), logits, rtol=1e-5, atol=1e-5
        )

        where = f"{model_name}/{name}"
        record["thought_steps"] = [
            {"index": k, **step_record(runner, s + k - 1, logits, checks, f"{where} thought {k}")}
            for k in range(1, n_thoughts + 1)
        ]
        record["answer_first"] = step_record(runner, T - 1, logits, checks, f"{where} answer_first")
        if n_thoughts >= 1:
            record["blocks"] = block_distances(
                runner, [s + k - 1 for k in range(1, n_thoughts + 1)], checks, where
            )
        if case.get("attention", False):
            # [layer][head][key position] for the last query position
            record["attention_last"] = [[float_list(row) for row in att[0, :, -1]] for att in out.attentions]

        # Greedy answer, re-running the full sequence with each generated token's embedding appended.
        answer_ids, last_logits = [], logits[-1]
        for step in range(case["max_new_tokens"]):
            token = checks.greedy(last_logits, f"{where} answer token {step}")
            answer_ids.append(token)
            if token == runner.eos_id or step + 1 == case["max_new_tokens"]:
                break
            embeds = torch.cat([embeds, runner.embed(torch.tensor([[token]]))], dim=1)
            last_logits = runner.forward(embeds).logits[0, -1]
        record["answer_ids"] = answer_ids
    runner.set_interventions(None, set())

    if case.get("head_importance", False):
        record["head_importance"] = head_importance(
            runner, input_ids, n_thoughts, start_id, gates, skip, answer_ids[0], logits[-1]
        )
    return record


def golden_cases(n_layers: int, n_heads: int) -> list[dict]:
    L, H = n_layers, n_heads
    spec = [
        ("t0_plain", 0, [], [], {"attention": True}),
        ("t0_ablate", 0, [[0, 1], [L - 1, H - 1]], [1], {}),
        ("t1_plain", 1, [], [], {}),
        ("t4_plain", 4, [], [], {}),
        ("t4_ablate", 4, [[0, 0], [1, 2]], [L - 1], {}),
        ("t4_hi", 4, [], [], {"head_importance": True}),
        ("t0_hi", 0, [[0, 1]], [], {"head_importance": True}),
    ]
    return [
        {"name": name, "prompt": PROMPTS[name], "thoughts": n, "ablate_heads": heads, "ablate_layers": layers,
         "max_new_tokens": 6, **extra}
        for name, n, heads, layers, extra in spec
    ]  # fmt: skip


def write_golden(model_name: str, checks: Checks) -> None:
    path = MODELS_DIR / model_name
    model = load_model(path)
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    runner = CoconutRunner(model)
    cases = [
        run_case(model_name, runner, tok, case, checks)
        for case in golden_cases(runner.n_layers, runner.n_heads)
    ]
    write_golden_file(f"{model_name}.json", model_name, cases)


def write_golden_file(file_name: str, model_name: str, cases: list[dict]) -> None:
    golden = {
        "model": model_name,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "cases": cases,
    }
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    (GOLDEN_DIR / file_name).write_text(golden_json(golden))


def golden_json(obj) -> str:
    """Indented JSON, numeric arrays on one line, floats rounded to 9 significant digits (exact for f32)."""

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


# Thought interventions: (name, prompt, second prompt, {thought: "zero" | "patch"}), three thoughts.
INTERVENTION_CASES = [
    ("zero_t2", "t4_plain", None, {2: "zero"}),
    ("zero_all", "t1_plain", None, {1: "zero", 2: "zero", 3: "zero"}),
    ("patch_t1", "t4_plain", "t4_hi", {1: "patch"}),
    ("patch_all", "t4_hi", "t1_plain", {1: "patch", 2: "patch", 3: "patch"}),
]
INTERVENTION_THOUGHTS = 3
INTERVENTION_NEW_TOKENS = 6


def write_intervention_golden(model_name: str, checks: Checks) -> None:
    """`tests/fixtures/golden/<model>.interventions.json`: greedy answers and first-token
    probabilities of runs whose thought slots receive zeros or a second prompt's thoughts."""
    path = MODELS_DIR / model_name
    runner = CoconutRunner(load_model(path))
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    start_id, end_id, latent_id = (tok.token_to_id(t) for t in COCONUT_TOKENS)
    n = INTERVENTION_THOUGHTS

    def ids_of(prompt: str) -> list[int]:
        ids = tok.encode(prompt + "\n", add_special_tokens=True).ids
        return ids + [start_id] + [latent_id] * n + [end_id]

    cases = []
    with torch.no_grad():
        for name, prompt_key, source_key, ops in INTERVENTION_CASES:
            where = f"{model_name}/{name}"
            source = None
            if source_key is not None:
                src_ids = ids_of(PROMPTS[source_key])
                src = runner.thought_embeddings(src_ids, n, start_id)
                s = src_ids.index(start_id)
                source = [src[:, s + k : s + k + 1] for k in range(1, n + 1)]
            feed = {
                k: (lambda t: torch.zeros_like(t)) if op == "zero" else (lambda t, k=k: source[k - 1])
                for k, op in ops.items()
            }
            input_ids = ids_of(PROMPTS[prompt_key])
            embeds = runner.thought_embeddings(input_ids, n, start_id, feed)
            logits = runner.forward(embeds).logits[0, -1]
            first = torch.softmax(logits, -1)
            answer_ids, last = [], logits
            for step in range(INTERVENTION_NEW_TOKENS):
                token = checks.greedy(last, f"{where} answer token {step}")
                answer_ids.append(token)
                if token == runner.eos_id or step + 1 == INTERVENTION_NEW_TOKENS:
                    break
                embeds = torch.cat([embeds, runner.embed(torch.tensor([[token]]))], dim=1)
                last = runner.forward(embeds).logits[0, -1]
            cases.append(
                {
                    "name": name,
                    "prompt": PROMPTS[prompt_key],
                    "patch_prompt": PROMPTS[source_key] if source_key else None,
                    "thoughts": n,
                    "intervene": ",".join(f"T{k}={op}" for k, op in sorted(ops.items())),
                    "max_new_tokens": INTERVENTION_NEW_TOKENS,
                    "answer_ids": answer_ids,
                    "first_probs": float_list(first),
                }
            )
    write_golden_file(f"{model_name}.interventions.json", model_name, cases)


# --------------------------------------------------------------------------------------------------------
# Verification of the saved fixtures
# --------------------------------------------------------------------------------------------------------

PROBE = "Every wumpus is a yumpus. Alex is a wumpus. Is Alex a yumpus or lempus?\n"


def probe_logits(model, tok: Tokenizer) -> torch.Tensor:
    ids = tok.encode(PROBE).ids + [
        tok.token_to_id(t) for t in COCONUT_TOKENS if tok.token_to_id(t) is not None
    ]
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys(), sa.keys() ^ sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def verify_reload(model, tok: Tokenizer, name: str) -> None:
    """The saved folder loads back (edited config included) and computes the in-memory model's outputs."""
    loaded = load_model(MODELS_DIR / name)
    assert_same_weights(model, loaded)
    torch.testing.assert_close(probe_logits(loaded, tok), probe_logits(model, tok), rtol=0, atol=0)
    if isinstance(model, LlamaForCausalLM):
        inv_freq = loaded.model.rotary_emb.inv_freq
        torch.testing.assert_close(inv_freq, model.model.rotary_emb.inv_freq, rtol=0, atol=0)
        cfg = loaded.config
        dim = cfg.head_dim
        plain = 1.0 / (cfg.rope_parameters["rope_theta"] ** (torch.arange(0, dim, 2).float() / dim))
        assert not torch.allclose(inv_freq, plain), "llama3 scaling does not change any frequency"


def verify_coconut_checkpoint(base, ckpt: Path, full_name: str, with_embedding: bool = True) -> None:
    """Emulate facebookresearch/coconut: base model (a folder name or a model) + 3 new tokens +
    Coconut state dict == full model."""
    if isinstance(base, str):
        base = load_model(MODELS_DIR / base)
    base.resize_token_embeddings(base.config.vocab_size + len(COCONUT_TOKENS))
    state = torch.load(ckpt, weights_only=True)
    if with_embedding:
        CoconutShell(base).load_state_dict(state, strict=True)
        assert torch.equal(state["embedding.weight"], base.get_input_embeddings().weight)
    else:
        prefix = "base_causallm."
        base.load_state_dict({k[len(prefix):]: v for k, v in state.items()}, strict=True)
    full = load_model(MODELS_DIR / full_name)
    assert_same_weights(base, full)
    tok = Tokenizer.from_file(str(MODELS_DIR / full_name / "tokenizer.json"))
    torch.testing.assert_close(probe_logits(base, tok), probe_logits(full, tok), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------


def make_models() -> None:
    corpus = build_corpus()
    gpt2_tok_base = gpt2_tokenizer(corpus)
    llama_tok_base = llama_tokenizer(corpus)
    gpt2_tok, llama_tok = with_coconut_tokens(gpt2_tok_base), with_coconut_tokens(llama_tok_base)
    eot = gpt2_tok.token_to_id("<|endoftext|>")

    # GPT-2 -------------------------------------------------------------------------------------------
    gpt2 = new_model(GPT2LMHeadModel, gpt2_config(gpt2_tok.get_vocab_size(), eot), seed=SEEDS["gpt2-tiny"])
    save_model(gpt2, gpt2_tok, "gpt2-tiny")
    verify_reload(gpt2, gpt2_tok, "gpt2-tiny")

    noprefix = MODELS_DIR / "gpt2-tiny-noprefix"
    gpt2.transformer.save_pretrained(noprefix)  # a GPT2Model: tensor names without "transformer."
    shutil.copy(MODELS_DIR / "gpt2-tiny" / "config.json", noprefix / "config.json")
    gpt2_tok.save(str(noprefix / "tokenizer.json"))
    verify_reload(gpt2, gpt2_tok, "gpt2-tiny-noprefix")

    gpt2_base = new_model(
        GPT2LMHeadModel, gpt2_config(gpt2_tok_base.get_vocab_size(), eot), seed=SEEDS["gpt2-tiny-base"]
    )
    save_model(gpt2_base, gpt2_tok_base, "gpt2-tiny-base")
    verify_reload(gpt2_base, gpt2_tok_base, "gpt2-tiny-base")

    ckpt = MODELS_DIR / "gpt2-tiny-coconut-ckpt" / "checkpoint_2"
    ckpt.parent.mkdir(parents=True)
    torch.save(CoconutShell(gpt2).state_dict(), ckpt)
    verify_coconut_checkpoint("gpt2-tiny-base", ckpt, "gpt2-tiny")

    # Llama -------------------------------------------------------------------------------------------
    llama = new_model(
        LlamaForCausalLM, llama_gqa_config(llama_tok.get_vocab_size()), seed=SEEDS["llama-tiny-gqa"]
    )
    save_model(llama, llama_tok, "llama-tiny-gqa", config_edit=to_old_rope_style)
    verify_reload(llama, llama_tok, "llama-tiny-gqa")

    llama_tied = new_model(
        LlamaForCausalLM, llama_tied_config(llama_tok.get_vocab_size()), seed=SEEDS["llama-tiny-tied"]
    )
    save_model(llama_tied, llama_tok, "llama-tiny-tied", config_edit=to_new_rope_style_without_head_dim)
    verify_reload(llama_tied, llama_tok, "llama-tiny-tied")

    llama_base = new_model(
        LlamaForCausalLM, llama_gqa_config(llama_tok_base.get_vocab_size()), seed=SEEDS["llama-tiny-base"]
    )
    save_model(llama_base, llama_tok_base, "llama-tiny-base", config_edit=to_old_rope_style)
    verify_reload(llama_base, llama_tok_base, "llama-tiny-base")

    ckpt = MODELS_DIR / "llama-tiny-coconut-ckpt" / "checkpoint_1"
    ckpt.parent.mkdir(parents=True)
    torch.save(CoconutShell(llama).state_dict(), ckpt)
    verify_coconut_checkpoint("llama-tiny-base", ckpt, "llama-tiny-gqa")


def coconut_state_without_embedding(model) -> dict:
    """The Coconut wrapper's state dict without its `embedding.weight` alias: only `base_causallm.*`."""
    state = CoconutShell(model).state_dict()
    del state["embedding.weight"]
    assert all(k.startswith("base_causallm.") for k in state)
    return state


def make_checkpoint_variants() -> None:
    """More checkpoint layouts, from the committed models (their weights are not changed)."""
    folder = MODELS_DIR / "gpt2-tiny-coconut-noemb"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    torch.save(coconut_state_without_embedding(load_model(MODELS_DIR / "gpt2-tiny")), folder / "checkpoint_2")
    verify_coconut_checkpoint("gpt2-tiny-base", folder / "checkpoint_2", "gpt2-tiny", with_embedding=False)

    # Llama 3.2 style: tied embeddings and llama3 RoPE; the base is config + tokenizer only, the
    # tokenizer lacking the three Coconut tokens (the official code adds them with add_tokens and
    # resizes the embedding).
    folder = MODELS_DIR / "llama-tiny-tied-coconut"
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "base").mkdir(parents=True)
    tied = load_model(MODELS_DIR / "llama-tiny-tied")
    cfg = json.loads((MODELS_DIR / "llama-tiny-tied" / "config.json").read_text())
    cfg["vocab_size"] = BASE_VOCAB
    (folder / "base" / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    base_tok = Tokenizer.from_file(str(MODELS_DIR / "llama-tiny-base" / "tokenizer.json"))
    assert base_tok.get_vocab_size() == BASE_VOCAB and base_tok.token_to_id(COCONUT_TOKENS[0]) is None
    base_tok.save(str(folder / "base" / "tokenizer.json"))
    torch.save(coconut_state_without_embedding(tied), folder / "checkpoint_1")
    base = LlamaForCausalLM(LlamaConfig.from_pretrained(folder / "base")).eval()
    base.set_attn_implementation("eager")
    verify_coconut_checkpoint(base, folder / "checkpoint_1", "llama-tiny-tied", with_embedding=False)

    make_malicious_checkpoint()


MALICIOUS_MARKER = "coconut-lens-pwned"


class RunsShellOnUnpickle:
    """Pickles to `os.system("touch coconut-lens-pwned")`: unpickling it normally runs the command."""

    def __reduce__(self):
        return (os.system, (f"touch {MALICIOUS_MARKER}",))


def make_malicious_checkpoint() -> None:
    """A checkpoint in torch.save's zip layout whose pickle would run a shell command if loaded with
    plain `pickle.load`. Written with `pickle.dumps` (which never runs the payload) and checked only
    statically: the payload is never unpickled here."""
    folder = MODELS_DIR / "malicious-ckpt"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    state = collections.OrderedDict([("base_causallm.transformer.wte.weight", RunsShellOnUnpickle())])
    data = pickle.dumps(state, protocol=2)
    path = folder / "checkpoint_1"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, content in (("data.pkl", data), ("byteorder", b"little"), ("version", b"3\n")):
            z.writestr(zipfile.ZipInfo(f"checkpoint_1/{name}", date_time=(1980, 1, 1, 0, 0, 0)), content)
    calls = [arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"]
    assert f"{os.system.__module__} system" in calls, calls
    assert any(op.name == "REDUCE" for op, _, _ in pickletools.genops(data))
    assert MALICIOUS_MARKER.encode() in data
    try:  # torch's restricted unpickler refuses the call without making it
        torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        pass
    else:
        raise AssertionError("torch.load(weights_only=True) accepted the malicious checkpoint")
    assert not Path(MALICIOUS_MARKER).exists()


INTERVENTION_MODELS = ("gpt2-tiny", "llama-tiny-gqa")


def main() -> None:
    t0 = time.time()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    if "--checkpoints-only" in sys.argv[1:]:
        # Only the extra checkpoint layouts, from the committed models.
        make_checkpoint_variants()
        print(f"checkpoint fixtures written in {time.time() - t0:.1f} s")
        return

    if "--interventions-only" in sys.argv[1:]:
        # Only the intervention references, from the committed models.
        checks = Checks()
        for name in INTERVENTION_MODELS:
            write_intervention_golden(name, checks)
        checks.raise_if_failed()
        print(f"intervention references written in {time.time() - t0:.1f} s")
        return

    for d in (MODELS_DIR, GOLDEN_DIR):
        if d.exists():
            shutil.rmtree(d)
    make_models()
    make_checkpoint_variants()

    checks = Checks()
    for name in ("gpt2-tiny", "llama-tiny-gqa", "llama-tiny-tied"):
        write_golden(name, checks)
    for name in INTERVENTION_MODELS:
        write_intervention_golden(name, checks)
    checks.raise_if_failed()
    # The CODI checkpoints are built on the base folders written above.
    import make_codi_fixtures

    make_codi_fixtures.main()

    total = sum(f.stat().st_size for f in FIXTURES.rglob("*") if f.is_file())
    probs = sorted(checks.max_probs)
    print(f"fixtures: {total / 1024:.1f} KiB in {FIXTURES.relative_to(ROOT)}")
    print(f"top-1 lens probabilities: min {probs[0]:.3f}, median {probs[len(probs) // 2]:.3f}, "
          f"share > 0.1: {sum(p > 0.1 for p in probs) / len(probs):.2f}")  # fmt: skip
    print(f"smallest top-6 gap {checks.min_rank_gap:.2e}, smallest greedy margin {checks.min_margin:.2e}")
    print(f"done in {time.time() - t0:.1f} s")
    assert total < SIZE_LIMIT, f"fixtures are {total} bytes (limit {SIZE_LIMIT})"


if __name__ == "__main__":
    main()
