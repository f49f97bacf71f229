//! Writes a random model with the shape of a real one, for benchmarks:
//! `cargo run --release --example make_random_model -- gpt2-124m target/models/gpt2-124m`.

use coconut_lens::synthetic::{Shape, write_random_model};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [shape, dir] = args.as_slice() else {
        anyhow::bail!("usage: make_random_model gpt2-124m|llama-1b OUT_DIR");
    };
    write_random_model(std::path::Path::new(dir), &Shape::by_name(shape)?, 0)?;
    eprintln!("wrote {dir}");
    Ok(())
}
