//! The worker thread: owns the model, takes one job at a time, reports through a callback.
//!
//! One pending slot: a new job replaces the pending one (latest wins) and cancels the running
//! one, whose result would be stale anyway. Results carry the generation of their job; the UI
//! drops those of older generations.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::Result;

use super::compute::{
    BaselineCache, compute_importance, compute_patch, compute_run, model_summary,
};
use super::data::{Job, WorkerMsg, error_line};
use crate::model::LoadedModel;

/// The worker thread's name; the panic hook leaves the terminal alone for panics there (they
/// are caught and reported in the status bar).
pub const THREAD_NAME: &str = "coconut-lens-worker";

/// A job's cancel flag, and whether the job is a head sweep (what `Esc` cancels).
type Flag = (Arc<AtomicBool>, bool);

#[derive(Default)]
struct Slot {
    pending: Option<(Job, Flag)>,
    running: Option<Flag>,
    shutdown: bool,
}

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    wake: Condvar,
}

/// Where the worker's reports go.
type Out = Arc<dyn Fn(WorkerMsg) + Send + Sync>;

pub struct Worker {
    shared: Arc<Shared>,
    out: Out,
}

impl Worker {
    /// Starts the worker: it loads the model with `load`, then serves jobs. Everything it has
    /// to say goes to `out`.
    pub fn spawn(
        load: impl FnOnce() -> Result<LoadedModel> + Send + 'static,
        out: impl Fn(WorkerMsg) + Send + Sync + 'static,
    ) -> Self {
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let out: Out = Arc::new(out);
        let thread_out = out.clone();
        // Detached: on drop the worker is asked to stop and ends after its current job.
        std::thread::Builder::new()
            .name(THREAD_NAME.to_string())
            .spawn(move || serve(load, &*thread_out, sh))
            .expect("spawn the worker thread");
        Worker { shared, out }
    }

    /// Hands a job over. Computations go to the worker thread (latest wins); file jobs (save,
    /// export) need no model and run at once on a thread of their own, so they neither wait for
    /// nor cancel a computation.
    pub fn submit(&self, job: Job) {
        if job.is_file_job() {
            let out = self.out.clone();
            let spawned = std::thread::Builder::new()
                .name("coconut-lens-files".into())
                .spawn(move || {
                    let report = out.clone();
                    if let Err(p) =
                        catch_unwind(AssertUnwindSafe(|| super::saved::run_file_job(job, &*out)))
                    {
                        report(WorkerMsg::Exported {
                            result: Err(panic_text(p)),
                        });
                    }
                });
            if let Err(e) = spawned {
                (self.out)(WorkerMsg::Exported {
                    result: Err(format!("cannot start the file thread: {e}")),
                });
            }
            return;
        }
        let mut slot = self.shared.slot.lock().expect("worker slot");
        match job {
            Job::Cancel => {
                let sweeps = slot
                    .running
                    .iter()
                    .chain(slot.pending.as_ref().map(|(_, f)| f));
                for (c, _) in sweeps.filter(|(_, sweep)| *sweep) {
                    c.store(true, Ordering::Relaxed);
                }
            }
            job => {
                // The running job belongs to older settings: stop it.
                if let Some((c, _)) = &slot.running {
                    c.store(true, Ordering::Relaxed);
                }
                let sweep = matches!(job, Job::Importance { .. } | Job::PatchSweep { .. });
                slot.pending = Some((job, (Arc::new(AtomicBool::new(false)), sweep)));
                self.shared.wake.notify_one();
            }
        }
    }

    fn stop(&self) {
        let mut slot = self.shared.slot.lock().expect("worker slot");
        slot.shutdown = true;
        if let Some((c, _)) = &slot.running {
            c.store(true, Ordering::Relaxed);
        }
        self.shared.wake.notify_one();
    }
}

impl Drop for Worker {
    /// Asks the worker to stop without waiting (it may be inside a forward pass).
    fn drop(&mut self) {
        self.stop();
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("internal error: {what}")
}

fn serve(
    load: impl FnOnce() -> Result<LoadedModel>,
    out: &(dyn Fn(WorkerMsg) + Send + Sync),
    shared: Arc<Shared>,
) {
    let lm = match catch_unwind(AssertUnwindSafe(load)) {
        Ok(Ok(lm)) => lm,
        Ok(Err(e)) => {
            out(WorkerMsg::LoadFailed(error_line(&e)));
            return;
        }
        Err(p) => {
            out(WorkerMsg::LoadFailed(panic_text(p)));
            return;
        }
    };
    out(WorkerMsg::Loaded(model_summary(&lm)));
    let mut cache = BaselineCache::default();
    loop {
        let (job, cancel) = {
            let mut slot = shared.slot.lock().expect("worker slot");
            loop {
                if slot.shutdown {
                    return;
                }
                if let Some((job, flag)) = slot.pending.take() {
                    let cancel = flag.0.clone();
                    slot.running = Some(flag);
                    break (job, cancel);
                }
                slot = shared.wake.wait(slot).expect("worker slot");
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            run_job(&lm, &job, &cancel, &mut cache, out)
        }));
        if let Err(p) = result {
            cache.clear();
            let e = panic_text(p);
            match job {
                Job::Run { generation, .. } => out(WorkerMsg::RunDone {
                    generation,
                    result: Err(e),
                }),
                Job::Importance {
                    generation,
                    request,
                    ..
                } => out(WorkerMsg::ImportanceDone {
                    generation,
                    request,
                    result: Err(e),
                }),
                Job::PatchSweep {
                    generation,
                    request,
                    ..
                } => out(WorkerMsg::PatchDone {
                    generation,
                    request,
                    result: Err(e),
                }),
                _ => {}
            }
        }
        shared.slot.lock().expect("worker slot").running = None;
    }
}

fn run_job(
    lm: &LoadedModel,
    job: &Job,
    cancel: &AtomicBool,
    cache: &mut BaselineCache,
    out: &dyn Fn(WorkerMsg),
) {
    match job {
        Job::Run { generation, params } => {
            let result = compute_run(lm, params, cache, cancel).map_err(|e| error_line(&e));
            out(WorkerMsg::RunDone {
                generation: *generation,
                result,
            });
        }
        Job::Importance {
            generation,
            request,
            params,
            answer,
            method,
        } => {
            let request = *request;
            if cancel.load(Ordering::Relaxed) {
                out(WorkerMsg::Cancelled { request });
                return;
            }
            let mut progress = |done, total| {
                out(WorkerMsg::Progress {
                    request,
                    done,
                    total,
                })
            };
            let result = compute_importance(lm, params, answer, *method, &mut progress, cancel);
            if cancel.load(Ordering::Relaxed) {
                out(WorkerMsg::Cancelled { request });
            } else {
                out(WorkerMsg::ImportanceDone {
                    generation: *generation,
                    request,
                    result: result.map_err(|e| error_line(&e)),
                });
            }
        }
        Job::PatchSweep {
            generation,
            request,
            params,
        } => {
            let request = *request;
            let mut progress = |done, total| {
                out(WorkerMsg::Progress {
                    request,
                    done,
                    total,
                })
            };
            let result = compute_patch(lm, params, &mut progress, cancel);
            if cancel.load(Ordering::Relaxed) {
                out(WorkerMsg::Cancelled { request });
            } else {
                out(WorkerMsg::PatchDone {
                    generation: *generation,
                    request,
                    result: result.map_err(|e| error_line(&e)),
                });
            }
        }
        // Cancel is handled on submit; file jobs never reach this thread.
        _ => {}
    }
}
