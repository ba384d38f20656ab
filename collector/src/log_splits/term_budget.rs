//! A memory budget for the body terms splits hold in memory ([`super::terms::SplitTerms`]).
//!
//! Every split's terms are loaded on first use and kept with its handle. Without a bound, a
//! large corpus would keep about a third of its raw size in memory; the budget keeps the most
//! recently used term lists within a byte limit and drops the least recently used ones (they
//! are loaded again from the split's term dictionary when a query needs them).
//!
//! A list a query used within the last [`PROTECT`] is not dropped for another: when the lists
//! queries need do not all fit, the one that does not fit serves its query and is not kept,
//! instead of every query dropping and reloading all of them in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::terms::SplitTerms;

/// The slot a split handle keeps its terms in.
pub(crate) type TermSlot = Mutex<Option<Arc<SplitTerms>>>;

/// How long a list a query used is kept over any other list.
pub const PROTECT: Duration = Duration::from_secs(30);

struct Entry {
    slot: Weak<TermSlot>,
    bytes: usize,
    last_used: u64,
    /// When a query last used the list (not set by loading ahead of queries).
    query_used_at: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    entries: Vec<Entry>,
    bytes: usize,
    tick: u64,
    evictions: u64,
}

/// Term lists held in memory across splits, at most `limit_bytes` of them.
pub struct TermBudget {
    limit_bytes: AtomicUsize,
    protect: Duration,
    inner: Mutex<Inner>,
}

impl TermBudget {
    /// A budget of `limit_bytes`.
    pub fn new(limit_bytes: usize) -> Self {
        Self::with_protection(limit_bytes, PROTECT)
    }

    /// A budget whose lists used by a query are kept over others for `protect`.
    pub fn with_protection(limit_bytes: usize, protect: Duration) -> Self {
        TermBudget { limit_bytes: AtomicUsize::new(limit_bytes), protect, inner: Mutex::new(Inner::default()) }
    }

    /// No limit (one-off readers such as a merge).
    pub fn unlimited() -> Arc<Self> {
        Arc::new(Self::new(usize::MAX))
    }

    /// The limit in bytes.
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes.load(Ordering::Relaxed)
    }

    /// Sets the limit; it applies from the next admission.
    pub fn set_limit_bytes(&self, limit_bytes: usize) {
        self.limit_bytes.store(limit_bytes, Ordering::Relaxed);
    }

    /// Bytes of term lists held now.
    pub fn held_bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Term lists dropped to stay within the limit so far.
    pub fn evictions(&self) -> u64 {
        self.inner.lock().evictions
    }

    /// Whether `bytes` more fit without dropping anything.
    pub fn has_room_for(&self, bytes: usize) -> bool {
        self.inner.lock().bytes.saturating_add(bytes) <= self.limit_bytes()
    }

    /// Marks `slot`'s terms as just used (by a query, or only reordered by loading ahead).
    pub(crate) fn touch(&self, slot: &Arc<TermSlot>, by_query: bool) {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(e) = inner.entries.iter_mut().find(|e| std::ptr::eq(e.slot.as_ptr(), Arc::as_ptr(slot))) {
            e.last_used = tick;
            if by_query {
                e.query_used_at = Some(Instant::now());
            }
        }
    }

    /// Records that `slot` now holds `bytes` of terms, emptying the least recently used other
    /// slots that no query used within the protection time until the total fits the limit.
    /// Returns false, recording nothing, when even that would not make room while protected
    /// lists exist: the caller then drops its list after use. (With nothing protected, the new
    /// list stays even alone over the limit.) Call without holding any slot lock.
    pub(crate) fn admit(&self, slot: &Arc<TermSlot>, bytes: usize, by_query: bool) -> bool {
        let limit = self.limit_bytes();
        let now = Instant::now();
        let protected = |e: &Entry| e.query_used_at.is_some_and(|at| now.duration_since(at) < self.protect);
        let victims = {
            let mut inner = self.inner.lock();
            inner.tick += 1;
            let tick = inner.tick;
            // Entries of dropped handles no longer count.
            let mut gone = 0;
            inner.entries.retain(|e| {
                let alive = e.slot.strong_count() > 0;
                if !alive {
                    gone += e.bytes;
                }
                alive
            });
            inner.bytes -= gone;
            let protected_bytes: usize = inner.entries.iter().filter(|e| protected(e)).map(|e| e.bytes).sum();
            if protected_bytes > 0 && protected_bytes + bytes > limit {
                return false;
            }
            inner.entries.push(Entry {
                slot: Arc::downgrade(slot),
                bytes,
                last_used: tick,
                query_used_at: by_query.then_some(now),
            });
            inner.bytes += bytes;
            let mut victims = Vec::new();
            while inner.bytes > limit {
                let Some((i, _)) = inner
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| !std::ptr::eq(e.slot.as_ptr(), Arc::as_ptr(slot)) && !protected(e))
                    .min_by_key(|(_, e)| e.last_used)
                else {
                    break;
                };
                let e = inner.entries.swap_remove(i);
                inner.bytes -= e.bytes;
                inner.evictions += 1;
                victims.push(e.slot);
            }
            victims
        };
        for v in victims {
            if let Some(s) = v.upgrade() {
                *s.lock() = None;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Arc<TermSlot> {
        Arc::new(Mutex::new(Some(Arc::new(SplitTerms::empty()))))
    }

    #[test]
    fn least_recently_used_lists_are_dropped_to_fit() {
        let budget = TermBudget::with_protection(100, Duration::ZERO);
        let (a, b, c) = (slot(), slot(), slot());
        assert!(budget.admit(&a, 40, true));
        assert!(budget.admit(&b, 40, true));
        assert_eq!(budget.held_bytes(), 80);
        assert!(budget.has_room_for(20) && !budget.has_room_for(21));
        budget.touch(&a, true);
        // c does not fit with both: b is the least recently used.
        assert!(budget.admit(&c, 40, true));
        assert_eq!(budget.held_bytes(), 80);
        assert!(a.lock().is_some() && b.lock().is_none() && c.lock().is_some());
        assert_eq!(budget.evictions(), 1);
        // One list larger than the whole budget stays (its query needs it); the others go.
        let d = slot();
        assert!(budget.admit(&d, 500, true));
        assert!(a.lock().is_none() && c.lock().is_none() && d.lock().is_some());
        assert_eq!(budget.held_bytes(), 500);
        // A dropped handle's bytes are released at the next admission.
        drop(d);
        let e = slot();
        assert!(budget.admit(&e, 10, true));
        assert_eq!(budget.held_bytes(), 10);
    }

    /// Lists a query used recently are not dropped for another: the newcomer is refused (its
    /// query uses it once); lists only loaded ahead of queries can still be dropped.
    #[test]
    fn lists_used_by_queries_are_protected() {
        let budget = TermBudget::with_protection(100, Duration::from_secs(3600));
        let (a, b, c) = (slot(), slot(), slot());
        assert!(budget.admit(&a, 60, true));
        assert!(!budget.admit(&b, 60, true), "a is protected and b does not fit beside it");
        assert!(a.lock().is_some());
        assert_eq!((budget.held_bytes(), budget.evictions()), (60, 0));
        // Loaded ahead (not by a query): droppable for a query's list that fits beside a.
        assert!(budget.admit(&b, 30, false));
        assert!(budget.admit(&c, 30, true));
        assert!(a.lock().is_some() && b.lock().is_none() && c.lock().is_some());
        assert_eq!((budget.held_bytes(), budget.evictions()), (90, 1));
    }
}
