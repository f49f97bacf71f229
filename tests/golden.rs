//! Golden tests: the engine against Hugging Face transformers in f32 on tiny random models
//! (fixtures and references from `scripts/make_fixtures.py`), and the bf16 path against the
//! same references with the bf16 tolerances the GPU check uses.

mod common;

use candle_core::{DType, Device};
use common::check::{Tol, check_model, fixture_models, load_checkpoint_on};
use common::*;

#[test]
fn gpt2_matches_transformers() {
    check_model(&load_dir("gpt2-tiny"), "gpt2-tiny", &Tol::F32, None);
}

#[test]
fn gpt2_without_transformer_prefix_matches_transformers() {
    check_model(
        &load_dir("gpt2-tiny-noprefix"),
        "gpt2-tiny",
        &Tol::F32,
        None,
    );
}

#[test]
fn llama_gqa_llama3_rope_untied_matches_transformers() {
    check_model(
        &load_dir("llama-tiny-gqa"),
        "llama-tiny-gqa",
        &Tol::F32,
        None,
    );
}

#[test]
fn llama_tied_rope_parameters_matches_transformers() {
    check_model(
        &load_dir("llama-tiny-tied"),
        "llama-tiny-tied",
        &Tol::F32,
        None,
    );
}

#[test]
fn coconut_gpt2_checkpoint_matches_its_folder() {
    let loaded = load_checkpoint_on(
        "gpt2-tiny-coconut-ckpt/checkpoint_2",
        "gpt2-tiny-base",
        &Device::Cpu,
        DType::F32,
    );
    assert!(loaded.tokenizer.coconut.is_some(), "Coconut tokens added");
    check_model(&loaded, "gpt2-tiny", &Tol::F32, None);
}

#[test]
fn coconut_llama_checkpoint_matches_its_folder() {
    let loaded = load_checkpoint_on(
        "llama-tiny-coconut-ckpt/checkpoint_1",
        "llama-tiny-base",
        &Device::Cpu,
        DType::F32,
    );
    check_model(&loaded, "llama-tiny-gqa", &Tol::F32, None);
}

/// bf16 end to end (weights, activations, KV cache; softmax, lens and KL in f32) keeps the
/// greedy answers and stays within the bf16 tolerances: the CPU half of the GPU check's bf16 claim.
#[test]
fn bf16_matches_transformers_within_bf16_tolerance() {
    let reference = fixture_models(&Device::Cpu, DType::F32);
    for ((label, loaded, golden_name), (_, f32_model, _)) in
        fixture_models(&Device::Cpu, DType::BF16)
            .into_iter()
            .zip(&reference)
    {
        assert_eq!(loaded.model.dtype(), DType::BF16, "{label}");
        check_model(&loaded, golden_name, &Tol::BF16, Some(f32_model));
    }
}
