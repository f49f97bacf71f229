//! The GPU check, compiled only with `--features cuda` and run on demand:
//!
//! ```sh
//! cargo test --release --features cuda -- --ignored gpu
//! ```
//!
//! Every golden fixture runs on CUDA device 0: in f32 it must match the transformers reference
//! and the CPU run within 1e-4 (the CPU golden standard, exact ids and greedy answers); in bf16
//! (the CUDA default) it must stay within the bf16 tolerances of `Tol::BF16` and keep every
//! greedy choice the f32 reference makes decisively. Without a usable GPU each test fails with
//! a message saying so: it never passes vacuously.
#![cfg(feature = "cuda")]

mod common;

use std::process::Command;

use candle_core::{DType, Device};
use coconut_lens::model::DeviceSpec;
use coconut_lens::model::load::default_dtype;
use common::check::{Tol, analyze_case, check_documents, check_model, fixture_models};
use common::*;

/// CUDA device 0, or a failure that says why the check cannot run.
fn cuda() -> Device {
    match Device::new_cuda(0) {
        Ok(d) => d,
        Err(e) => panic!(
            "the GPU check needs an NVIDIA GPU with a CUDA 13 capable driver (R580+), and CUDA \
             device 0 could not be opened: {}",
            e.to_string().lines().next().unwrap_or_default()
        ),
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test --release --features cuda -- --ignored gpu"]
fn gpu_golden_f32_matches_transformers_and_the_cpu() {
    let dev = cuda();
    let cpu = fixture_models(&Device::Cpu, DType::F32);
    for ((label, gpu, golden_name), (_, cpu, _)) in
        fixture_models(&dev, DType::F32).into_iter().zip(&cpu)
    {
        assert!(gpu.model.device().is_cuda(), "{label}: loaded on the GPU");
        check_model(&gpu, golden_name, &Tol::F32, None);
        for case in &golden(golden_name).cases {
            let (_, on_gpu) = analyze_case(&gpu, case);
            let (_, on_cpu) = analyze_case(cpu, case);
            assert_eq!(on_gpu.runtime.device, "cuda:0");
            check_documents(
                &format!("{label}/{} GPU vs CPU", case.name),
                &on_gpu,
                &on_cpu,
                &Tol::F32,
            );
        }
        eprintln!("{label}: f32 on the GPU matches");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test --release --features cuda -- --ignored gpu"]
fn gpu_golden_bf16_within_bf16_tolerance() {
    let dev = cuda();
    assert_eq!(default_dtype(&dev), DType::BF16, "bf16 is the CUDA default");
    let reference = fixture_models(&Device::Cpu, DType::F32);
    for ((label, gpu, golden_name), (_, f32_model, _)) in fixture_models(&dev, DType::BF16)
        .into_iter()
        .zip(&reference)
    {
        assert!(gpu.model.device().is_cuda(), "{label}: loaded on the GPU");
        check_model(&gpu, golden_name, &Tol::BF16, Some(f32_model));
        eprintln!("{label}: bf16 on the GPU within tolerance");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test --release --features cuda -- --ignored gpu"]
fn gpu_auto_device_picks_the_gpu_in_bf16() {
    cuda();
    let dev = DeviceSpec::Auto.open().unwrap();
    assert!(dev.is_cuda(), "--device auto takes the GPU");
    let out = Command::new(env!("CARGO_BIN_EXE_coconut-lens"))
        .args(["analyze", "--model"])
        .arg(model_dir("gpt2-tiny"))
        .args(["--prompt", "Every wumpus is a yumpus. Is Alex a wumpus?"])
        .args(["--thoughts", "2", "--head-importance", "gradient"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["runtime"]["device"], "cuda:0");
    assert_eq!(doc["runtime"]["dtype"], "bf16");
}
