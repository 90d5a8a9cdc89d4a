//! A member's lease on the output of its partitions (`[source]
//! scale_out`): how a process that was suspended (SIGSTOP, a frozen VM)
//! long enough for its consumer group to give its partitions to another
//! member is kept from writing for them when it wakes up.
//!
//! Checking the group before each write is not enough: librdkafka sends
//! what it had queued as soon as the process runs again. So output is
//! made unable to outlive the lease instead:
//! - every message a member's sinks queue expires `message_timeout` after
//!   it was queued (librdkafka times it out, undelivered),
//!   and that is below the time the group needs to give the member's
//!   partitions away (`session.timeout.ms` less a heartbeat);
//! - a ticker thread notices when the process did not run for longer than
//!   `suspended_after`; from then on the lease is lost for good, and the
//!   sinks purge what they hold and refuse to write;
//! - a member that takes over a partition from a member that did not hand
//!   it over waits `message_timeout` before it reads the partition's
//!   output back, so that nothing the old owner queued can still arrive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The lease of one member process. Clones share it.
#[derive(Debug, Clone)]
pub struct Lease {
    inner: Arc<Inner>,
    /// How long a queued message may wait for delivery.
    pub message_timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    /// When the ticker last ran, in ns since `started`.
    ticked: AtomicU64,
    /// Set by the ticker when it finds a gap longer than `limit`, before
    /// it records the tick that found it.
    lost: AtomicBool,
    limit: Duration,
    stop: AtomicBool,
}

impl Lease {
    /// The lease of a member whose group gives its partitions away
    /// `session_timeout` after its last heartbeat (sent every
    /// `heartbeat`): messages expire after three quarters of what is left
    /// of the session after a heartbeat, and a process that did not run
    /// for half of that loses the lease.
    pub fn for_session(session_timeout: Duration, heartbeat: Duration) -> Lease {
        let (message_timeout, suspended_after) = Lease::timeouts(session_timeout, heartbeat);
        Lease::start(message_timeout, suspended_after)
    }

    /// The message timeout and the suspension limit of
    /// [`Lease::for_session`].
    pub fn timeouts(session_timeout: Duration, heartbeat: Duration) -> (Duration, Duration) {
        let left = session_timeout.saturating_sub(heartbeat);
        let message_timeout = (left * 3 / 4).max(Duration::from_millis(200));
        (message_timeout, message_timeout / 2)
    }

    /// The session timeout and heartbeat interval a consumer with the
    /// librdkafka `properties` uses (librdkafka's defaults: 45 s and 3 s).
    pub fn session_of(properties: &std::collections::BTreeMap<String, String>) -> (Duration, Duration) {
        let ms = |name: &str, default: u64| {
            Duration::from_millis(properties.get(name).and_then(|v| v.trim().parse().ok()).unwrap_or(default))
        };
        (ms("session.timeout.ms", 45_000), ms("heartbeat.interval.ms", 3_000))
    }

    /// A lease whose messages expire after `message_timeout`, lost once
    /// the process does not run for `suspended_after`.
    pub fn start(message_timeout: Duration, suspended_after: Duration) -> Lease {
        let inner = Arc::new(Inner {
            started: Instant::now(),
            ticked: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            limit: suspended_after,
            stop: AtomicBool::new(false),
        });
        let ticker = inner.clone();
        let tick = (suspended_after / 10).clamp(Duration::from_millis(5), Duration::from_millis(100));
        let spawned = std::thread::Builder::new().name("weir-lease".into()).spawn(move || {
            while !ticker.stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                let now = ticker.elapsed_ns();
                let last = ticker.ticked.load(Ordering::SeqCst);
                if Duration::from_nanos(now.saturating_sub(last)) > ticker.limit {
                    ticker.lost.store(true, Ordering::SeqCst);
                }
                ticker.ticked.store(now, Ordering::SeqCst);
            }
        });
        if spawned.is_err() {
            // Without its ticker the lease cannot be trusted: it is lost.
            inner.lost.store(true, Ordering::SeqCst);
        }
        Lease { inner, message_timeout }
    }

    /// Whether the member may still write: the process ran all along
    /// (the ticker saw no gap longer than the limit, and has ticked within
    /// it), and nobody said it lost its partitions.
    pub fn holds(&self) -> bool {
        // The tick first: a ticker that found a gap says so before it
        // records the tick, so a fresh tick comes with the loss.
        let last = self.inner.ticked.load(Ordering::SeqCst);
        let lost = self.inner.lost.load(Ordering::SeqCst);
        let now = self.inner.elapsed_ns();
        !lost && Duration::from_nanos(now.saturating_sub(last)) <= self.inner.limit
    }

    /// Gives the lease up for good: the group took the partitions away
    /// before this member could hand them over.
    pub fn lose(&self) {
        self.inner.lost.store(true, Ordering::SeqCst);
    }

    /// How long the process may go without running before the lease is
    /// lost.
    pub fn suspended_after(&self) -> Duration {
        self.inner.limit
    }
}

impl Inner {
    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_while_the_process_runs_and_is_lost_for_good_after_a_gap_or_a_loss() {
        let lease = Lease::start(Duration::from_millis(400), Duration::from_millis(200));
        for _ in 0..10 {
            assert!(lease.holds());
            std::thread::sleep(Duration::from_millis(30));
        }
        let given_up = lease.clone();
        given_up.lose();
        assert!(!lease.holds(), "clones share the lease");

        // A suspended process, as its ticker sees it: a tick long after
        // the one before. SIGSTOP of the test process itself would stop
        // the test, so the gap is made by hand.
        let lease = Lease::start(Duration::from_millis(400), Duration::from_millis(200));
        assert!(lease.holds());
        lease.inner.ticked.store(0, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while lease.inner.elapsed_ns() < 300_000_000 {
            std::thread::sleep(Duration::from_millis(10));
        }
        while !lease.inner.lost.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the ticker never noticed the gap");
            lease.inner.ticked.store(0, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(!lease.holds(), "lost for good, though the ticker ticks again");
        assert_eq!(lease.suspended_after(), Duration::from_millis(200));

        let derived = Lease::for_session(Duration::from_secs(6), Duration::from_millis(500));
        assert_eq!(derived.message_timeout, Duration::from_millis(4125));
        assert_eq!(derived.suspended_after(), Duration::from_millis(2062) + Duration::from_micros(500));
    }
}
