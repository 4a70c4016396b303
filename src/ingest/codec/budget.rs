//! The memory all syslog TCP connections may hold in unfinished frames
//! (`HLE_TCP_BUFFER_BUDGET_BYTES`). Each connection's codec keeps an [`Account`] of the
//! bytes its read buffer holds once every complete frame is taken out; the accounts add
//! up in one [`Budget`].
//!
//! The rule: a connection may grow while the total stays within the budget. When its
//! growth would take the total over, it is cut if it holds more than its fair share (the
//! budget divided among the open connections); within its share it may grow anyway, and
//! the connections over their share are told ([`Budget::pressed`]) to look at themselves
//! and, being over it, cut themselves. So a few connections holding huge partial frames
//! cannot starve a well-behaved one, and the total stays within about twice the budget
//! for the moment it takes the largest holders to go.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Shared by every connection of the syslog TCP listener.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    held: AtomicUsize,
    /// Connections that hold an account.
    open: AtomicUsize,
    pressure: Notify,
    /// `held`, for the self-metrics.
    gauge: IntGauge,
}

impl Budget {
    pub fn new(limit: usize, gauge: IntGauge) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            held: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            pressure: Notify::new(),
            gauge,
        })
    }

    /// A new connection's account, holding nothing yet.
    pub fn account(self: &Arc<Self>) -> Account {
        self.open.fetch_add(1, Ordering::Relaxed);
        Account {
            budget: self.clone(),
            held: 0,
        }
    }

    /// Bytes held by all connections now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// What each open connection may hold whatever the others do.
    fn fair_share(&self) -> usize {
        self.limit / self.open.load(Ordering::Relaxed).max(1)
    }

    /// Resolves when a connection within its share took the total over the budget: the
    /// connections over their share should then look at [`Account::over_share`].
    /// The future is armed from its creation, polled or not.
    pub fn pressed(&self) -> Notified<'_> {
        self.pressure.notified()
    }

    fn add(&self, n: usize) -> usize {
        self.gauge.add(i64::try_from(n).unwrap_or(i64::MAX));
        self.held.fetch_add(n, Ordering::Relaxed).saturating_add(n)
    }

    fn sub(&self, n: usize) {
        self.gauge.sub(i64::try_from(n).unwrap_or(i64::MAX));
        self.held.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The bytes one connection holds, released when it is dropped.
#[derive(Debug)]
pub struct Account {
    budget: Arc<Budget>,
    held: usize,
}

/// A connection would hold more than the budget lets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

impl Account {
    /// Records that the connection now holds `bytes`; `Err` when it may not, and then
    /// the account is left as it was.
    pub fn hold(&mut self, bytes: usize) -> Result<(), OverBudget> {
        if bytes <= self.held {
            self.budget.sub(self.held - bytes);
            self.held = bytes;
            return Ok(());
        }
        let growth = bytes - self.held;
        let total = self.budget.add(growth);
        if total > self.budget.limit {
            if bytes > self.budget.fair_share() {
                self.budget.sub(growth);
                return Err(OverBudget);
            }
            self.budget.pressure.notify_waiters();
        }
        self.held = bytes;
        Ok(())
    }

    /// Whether the budget is exceeded and this connection holds more than its share.
    pub fn over_share(&self) -> bool {
        self.budget.held() > self.budget.limit && self.held > self.budget.fair_share()
    }

    /// Bytes this connection holds.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The budget this account is part of.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.budget.sub(self.held);
        self.budget.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> Arc<Budget> {
        Budget::new(limit, IntGauge::new("held", "held").unwrap())
    }

    #[test]
    fn a_connection_grows_within_the_budget_and_releases_on_drop() {
        let budget = budget(100);
        let mut a = budget.account();
        assert_eq!(a.hold(60), Ok(()));
        assert_eq!(a.hold(100), Ok(()));
        assert_eq!(a.hold(101), Err(OverBudget));
        assert_eq!(budget.held(), 100);
        assert_eq!(a.hold(10), Ok(()));
        assert_eq!(budget.held(), 10);
        drop(a);
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.gauge.get(), 0);
    }

    #[test]
    fn over_the_budget_only_the_connections_over_their_share_are_cut() {
        let budget = budget(100);
        let mut hog = budget.account();
        let mut fair = budget.account();
        assert_eq!(hog.hold(90), Ok(()));
        // The fair share of two connections is 50: the hog may not grow past the
        // budget, the other may, within its share, and the hog is then over its share.
        assert_eq!(hog.hold(95), Ok(()));
        assert_eq!(hog.hold(120), Err(OverBudget));
        assert!(!hog.over_share());
        assert_eq!(fair.hold(40), Ok(()));
        assert!(hog.over_share());
        assert!(!fair.over_share());
        assert_eq!(fair.hold(51), Err(OverBudget));
        drop(hog);
        assert!(!fair.over_share());
        assert_eq!(fair.hold(100), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fair_connection_over_the_budget_presses_the_others() {
        let wait = std::time::Duration::from_secs(1);
        let budget = budget(100);
        let mut hog = budget.account();
        let mut fair = budget.account();
        hog.hold(100).unwrap();
        let unpressed = budget.pressed();
        fair.hold(0).unwrap();
        assert!(tokio::time::timeout(wait, unpressed).await.is_err());
        let pressed = budget.pressed();
        fair.hold(10).unwrap();
        assert!(tokio::time::timeout(wait, pressed).await.is_ok());
    }
}
