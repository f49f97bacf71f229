//! `coconut-lens export`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use super::Session;
use crate::plot::{Format, export};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A saved session (JSON).
    pub session: PathBuf,
    /// Folder for the plots. Default: beside the session, named after it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// png, svg or png,svg.
    #[arg(long, default_value = "png,svg")]
    pub format: String,
}

/// The default plot folder of a session file: `sessions/<name>.json` → `sessions/<name>/`.
pub fn default_plot_dir(session: &std::path::Path) -> PathBuf {
    session.with_extension("")
}

pub fn run(args: &ExportArgs) -> Result<()> {
    let formats = Format::parse_list(&args.format)?;
    let session = Session::load(&args.session)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_plot_dir(&args.session));
    let started = Instant::now();
    let files = export(&session, &out, &formats)?;
    for f in &files {
        println!("{}", f.display());
    }
    eprintln!(
        "{} plots in {} ({:.0} ms)",
        files.len(),
        out.display(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
