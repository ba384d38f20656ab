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

/// Runs `f` on a thread of the pool and returns what it returns. Jobs that `f` hands to
/// [`on_pool`] then start from a thread of the pool, which works on them itself, instead of
/// from a thread outside it that sleeps until they are done and is woken after, once per
/// round (a limited log search hands jobs to the pool up to four times).
pub fn within_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let mut out = None;
    rayon::scope(|_| out = Some(f()));
    out.expect("a scope runs its closure")
}

/// Threads of the pool: one per core.
pub fn pool_size() -> usize {
    rayon::current_num_threads()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_pool_runs_on_the_pool_and_nested_jobs_too() {
        assert_eq!(rayon::current_thread_index(), None, "the test thread is outside the pool");
        let (outer, inner) = within_pool(|| {
            let inner = on_pool((0..4).map(|_| || Ok(rayon::current_thread_index())), "test").unwrap();
            (rayon::current_thread_index(), inner)
        });
        assert!(outer.is_some(), "the closure ran on the pool");
        assert!(inner.iter().all(Option::is_some));
    }

    #[test]
    fn results_come_in_job_order_and_a_panic_is_an_error() {
        let got = on_pool((0..50u64).map(|i| move || Ok(i * i)), "test").unwrap();
        assert_eq!(got, (0..50u64).map(|i| i * i).collect::<Vec<_>>());
        let failed = on_pool((0..3).map(|i| move || if i == 1 { panic!("job {i} fails") } else { Ok(i) }), "test");
        let err = failed.expect_err("a job panicked");
        assert!(err.to_string().contains("a test job panicked"), "{err}");
        let errors = on_pool((0..3).map(|i| move || if i == 2 { Err(Error::Internal(format!("job {i}"))) } else { Ok(i) }), "test");
        assert!(errors.is_err(), "an error of any job is the error of all");
    }
}
