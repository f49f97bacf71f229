//! coconut-lens: an interpretability explorer for language models that reason in continuous
//! thought (Coconut, Hao et al. 2024).
//!
//! Layers, bottom up: [`model`] (loading and an instrumented forward pass), [`thought`] (the
//! continuous-thought runner), [`analysis`] (logit lens, angular distances, head importance),
//! [`data`] (the ProsQA-style generator and the word-level tokenizer), and the front ends
//! ([`cli`], [`tui`]). None of the engine layers knows about the terminal.

pub mod analysis;
pub mod cli;
pub mod data;
pub mod eval;
pub mod files;
pub mod interrupt;
pub mod model;
pub mod numeric;
pub mod plot;
pub mod report;
pub mod session;
pub mod synthetic;
pub mod thought;
pub mod train;
pub mod tui;
