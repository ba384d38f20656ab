//! A memory budget for the body terms splits hold in memory ([`super::terms::SplitTerms`]).
//!
//! Every split's terms are loaded on first use and kept with its handle. Without a bound, a
//! large corpus would keep about a third of its raw size in memory; the budget keeps the most
//! recently used term lists within a byte limit and drops the least recently used ones (they
//! are loaded again from the split's term dictionary when a query needs them).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::terms::SplitTerms;

/// The slot a split handle keeps its terms in.
pub(crate) type TermSlot = Mutex<Option<Arc<SplitTerms>>>;

struct Entry {
    slot: Weak<TermSlot>,
    bytes: usize,
    last_used: u64,
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
    inner: Mutex<Inner>,
}

impl TermBudget {
    /// A budget of `limit_bytes`.
    pub fn new(limit_bytes: usize) -> Self {
        TermBudget { limit_bytes: AtomicUsize::new(limit_bytes), inner: Mutex::new(Inner::default()) }
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

    /// Marks `slot`'s terms as just used.
    pub(crate) fn touch(&self, slot: &Arc<TermSlot>) {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(e) = inner.entries.iter_mut().find(|e| std::ptr::eq(e.slot.as_ptr(), Arc::as_ptr(slot))) {
            e.last_used = tick;
        }
    }

    /// Records that `slot` now holds `bytes` of terms, and empties the least recently used
    /// other slots until the total fits the limit (the newest list always stays, even alone
    /// over the limit: the query that loaded it needs it). Call without holding any slot lock.
    pub(crate) fn admit(&self, slot: &Arc<TermSlot>, bytes: usize) {
        let limit = self.limit_bytes();
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
            inner.entries.push(Entry { slot: Arc::downgrade(slot), bytes, last_used: tick });
            inner.bytes += bytes;
            let mut victims = Vec::new();
            while inner.bytes > limit && inner.entries.len() > 1 {
                let (i, _) = inner
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| !std::ptr::eq(e.slot.as_ptr(), Arc::as_ptr(slot)))
                    .min_by_key(|(_, e)| e.last_used)
                    .expect("more than one entry");
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
        let budget = TermBudget::new(100);
        let (a, b, c) = (slot(), slot(), slot());
        budget.admit(&a, 40);
        budget.admit(&b, 40);
        assert_eq!(budget.held_bytes(), 80);
        assert!(budget.has_room_for(20) && !budget.has_room_for(21));
        budget.touch(&a);
        // c does not fit with both: b is the least recently used.
        budget.admit(&c, 40);
        assert_eq!(budget.held_bytes(), 80);
        assert!(a.lock().is_some() && b.lock().is_none() && c.lock().is_some());
        assert_eq!(budget.evictions(), 1);
        // One list larger than the whole budget stays (its query needs it); the others go.
        let d = slot();
        budget.admit(&d, 500);
        assert!(a.lock().is_none() && c.lock().is_none() && d.lock().is_some());
        assert_eq!(budget.held_bytes(), 500);
        // A dropped handle's bytes are released at the next admission.
        drop(d);
        let e = slot();
        budget.admit(&e, 10);
        assert_eq!(budget.held_bytes(), 10);
    }
}
