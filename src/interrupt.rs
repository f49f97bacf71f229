//! Ctrl-C for long data-set work: the command-line front end turns SIGINT into a request that
//! the engine's loops honour between problems, so a run stops with an error instead of dying
//! half-way through writing a file.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// From now on SIGINT (Ctrl-C) sets the request instead of killing the process. A second
/// Ctrl-C, once a request is pending, kills it as usual.
pub fn install() -> Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::SIGINT;
        // Registered first, so it sees the flag before this Ctrl-C sets it.
        signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(flag()))?;
        signal_hook::flag::register(SIGINT, Arc::clone(flag()))?;
    }
    Ok(())
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed)
}

/// An error once Ctrl-C was pressed.
pub fn check() -> Result<()> {
    if requested() {
        bail!("interrupted");
    }
    Ok(())
}
