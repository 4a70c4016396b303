//! The `HLE_WEB_MAX_CONNECTIONS` open HTTP connections. When all are taken, a new
//! connection takes the slot of the oldest one that has no response in progress (an idle
//! keep-alive connection, one whose request head is still coming in, one in its TLS
//! handshake), which is closed; only when every connection is busy answering is the new
//! one refused. So idle and slow clients cannot keep a scraper out for the length of the
//! header timeout, and a response being sent is never cut off for a newcomer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The open connections, oldest first.
pub(super) struct Slots {
    max: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    next: u64,
    by_age: BTreeMap<u64, Entry>,
}

struct Entry {
    busy: Arc<AtomicUsize>,
    evict: CancellationToken,
}

/// What a new connection got.
pub(super) enum Admission {
    /// A free slot.
    Admitted(Slot),
    /// The slot of an idle connection, now being closed.
    Evicted(Slot),
    /// Every open connection is answering a request.
    Refused,
}

/// A connection's slot, given back when dropped.
pub(super) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    /// Responses in progress on this connection; while above 0 it is not evicted.
    pub(super) busy: Arc<AtomicUsize>,
    /// Cancelled when a newer connection takes this slot.
    pub(super) evicted: CancellationToken,
}

impl Slots {
    pub(super) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            open: Mutex::default(),
        })
    }

    /// A slot for a new connection, from the free ones or an idle connection's.
    pub(super) fn admit(self: &Arc<Slots>) -> Admission {
        let mut open = match self.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut evicted = false;
        if open.by_age.len() >= self.max {
            let idle = open
                .by_age
                .iter()
                .find(|(_, e)| e.busy.load(Ordering::Relaxed) == 0)
                .map(|(id, _)| *id);
            let Some(entry) = idle.and_then(|id| open.by_age.remove(&id)) else {
                return Admission::Refused;
            };
            entry.evict.cancel();
            evicted = true;
        }
        let id = open.next;
        open.next += 1;
        let (busy, evict) = (Arc::new(AtomicUsize::new(0)), CancellationToken::new());
        open.by_age.insert(
            id,
            Entry {
                busy: busy.clone(),
                evict: evict.clone(),
            },
        );
        let slot = Slot {
            slots: self.clone(),
            id,
            busy,
            evicted: evict,
        };
        match evicted {
            true => Admission::Evicted(slot),
            false => Admission::Admitted(slot),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = match self.slots.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        open.by_age.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(admission: Admission) -> Slot {
        match admission {
            Admission::Admitted(slot) | Admission::Evicted(slot) => slot,
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn the_oldest_idle_connection_makes_room_and_busy_ones_are_kept() {
        let slots = Slots::new(2);
        let first = slot(slots.admit());
        let second = slot(slots.admit());
        first.busy.fetch_add(1, Ordering::Relaxed);
        // The first is busy: the second, idle, goes.
        let third = match slots.admit() {
            Admission::Evicted(slot) => slot,
            _ => panic!("not evicted"),
        };
        assert!(second.evicted.is_cancelled());
        assert!(!first.evicted.is_cancelled());
        // Both left are busy: refused.
        third.busy.fetch_add(1, Ordering::Relaxed);
        assert!(matches!(slots.admit(), Admission::Refused));
        // The evicted connection's end does not free the newcomer's slot.
        drop(second);
        assert!(matches!(slots.admit(), Admission::Refused));
        // A connection that ends frees its slot.
        drop(first);
        assert!(matches!(slots.admit(), Admission::Admitted(_)));
    }
}
