//! The thread pool that parallel file reads and log searches run their jobs on.

use crate::{Error, Result};

/// Runs the jobs on rayon's thread pool (one thread per core, started once: starting threads
/// per query, and unmapping their stacks, was a tenth of a short log count's CPU) and returns
/// their results in order; a job that panics is an internal error naming `what`.
pub fn on_pool<T: Send, J: FnOnce() -> Result<T> + Send>(jobs: impl IntoIterator<Item = J>, what: &str) -> Result<Vec<T>> {
    let jobs: Vec<J> = jobs.into_iter().collect();
    let mut slots: Vec<Option<Result<T>>> = jobs.iter().map(|_| None).collect();
    rayon::scope(|scope| {
        for (job, slot) in jobs.into_iter().zip(slots.iter_mut()) {
            scope.spawn(move |_| {
                let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                *slot = Some(done.unwrap_or_else(|_| Err(Error::Internal(format!("a {what} job panicked")))));
            });
        }
    });
    slots.into_iter().map(|s| s.unwrap_or_else(|| Err(Error::Internal(format!("a {what} job did not run"))))).collect()
}

/// Threads of the pool: one per core.
pub fn pool_size() -> usize {
    rayon::current_num_threads()
}
