//! The `HLE_WEB_MAX_CONNECTIONS` open HTTP connections. When all are taken, a new
//! connection takes the slot of the oldest one that has no response in progress (an idle
//! keep-alive connection, one whose request head is still coming in, one in its TLS
//! handshake), which is closed; only when every connection is busy answering is the new
//! one refused. So idle and slow clients cannot keep a scraper out for the length of the
//! header timeout, and a response being sent is never cut off for a newcomer. The
//! newcomer is served once the connection it replaces has closed, so that no more than
//! the cap (and the one being admitted) hold descriptors, however fast they come.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a newcomer waits for the idle connection it replaces to close (it closes as
/// soon as its task runs; this only bounds a runtime too busy to run it).
const EVICT_WAIT: Duration = Duration::from_secs(1);

/// The open connections, oldest first.
pub(super) struct Slots {
    /// One permit per open connection, given back when its task ends.
    permits: Arc<Semaphore>,
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
    _permit: OwnedSemaphorePermit,
    id: u64,
    /// Responses in progress on this connection; while above 0 it is not evicted.
    pub(super) busy: Arc<AtomicUsize>,
    /// Cancelled when a newer connection takes this slot.
    pub(super) evicted: CancellationToken,
}

impl Slots {
    pub(super) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(max.max(1))),
            open: Mutex::default(),
        })
    }

    /// A slot for a new connection: a free one, or that of the oldest idle connection
    /// once it has closed.
    pub(super) async fn admit(self: &Arc<Slots>) -> Admission {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Admission::Admitted(self.register(permit));
        }
        if !self.evict_oldest_idle() {
            return Admission::Refused;
        }
        match tokio::time::timeout(EVICT_WAIT, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Admission::Evicted(self.register(permit)),
            _ => Admission::Refused,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        match self.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Tells the oldest connection with no response in progress to close; false if every
    /// open connection is busy.
    fn evict_oldest_idle(&self) -> bool {
        let mut open = self.lock();
        let idle = open
            .by_age
            .iter()
            .find(|(_, e)| e.busy.load(Ordering::Relaxed) == 0)
            .map(|(id, _)| *id);
        match idle.and_then(|id| open.by_age.remove(&id)) {
            Some(entry) => {
                entry.evict.cancel();
                true
            }
            None => false,
        }
    }

    fn register(self: &Arc<Slots>, permit: OwnedSemaphorePermit) -> Slot {
        let mut open = self.lock();
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
        Slot {
            slots: self.clone(),
            _permit: permit,
            id,
            busy,
            evicted: evict,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().by_age.remove(&self.id);
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

    /// Plays the connection task: ends when told to make room.
    fn closes_when_evicted(slot: Slot) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            slot.evicted.cancelled().await;
            drop(slot);
        })
    }

    #[tokio::test]
    async fn the_oldest_idle_connection_makes_room_and_busy_ones_are_kept() {
        let slots = Slots::new(2);
        let first = slot(slots.admit().await);
        let second = slot(slots.admit().await);
        first.busy.fetch_add(1, Ordering::Relaxed);
        let second_token = second.evicted.clone();
        let second_task = closes_when_evicted(second);
        // The first is busy: the second, idle, goes, and the newcomer has its place.
        let third = match slots.admit().await {
            Admission::Evicted(slot) => slot,
            _ => panic!("not evicted"),
        };
        assert!(second_token.is_cancelled());
        assert!(!first.evicted.is_cancelled());
        second_task.await.expect("the evicted connection's task");
        // Both left are busy: refused at once.
        third.busy.fetch_add(1, Ordering::Relaxed);
        assert!(matches!(slots.admit().await, Admission::Refused));
        // A connection that ends frees its slot.
        drop(first);
        assert!(matches!(slots.admit().await, Admission::Admitted(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_newcomer_waits_for_the_evicted_one_to_close_and_no_longer() {
        let slots = Slots::new(1);
        let idle = slot(slots.admit().await);
        // The idle connection never closes: after the wait the newcomer is refused, and
        // the descriptors never exceed the cap.
        assert!(matches!(slots.admit().await, Admission::Refused));
        assert!(idle.evicted.is_cancelled());
        drop(idle);
        assert!(matches!(slots.admit().await, Admission::Admitted(_)));
    }
}
