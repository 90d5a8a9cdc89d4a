//! Broker outages as a job's log shows them: once when a client finds the
//! brokers unreachable, once when they answer again, however many requests
//! fail in between (librdkafka retries those by itself, with backoff).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// The reachability of the brokers for one client (a source or a sink).
#[derive(Debug)]
pub(crate) struct OutageReport {
    /// `source` or `sink`.
    role: &'static str,
    topic: String,
    brokers: String,
    /// Set while an outage lasts; read on every delivery, so it is checked
    /// before the lock.
    down: AtomicBool,
    /// When the outage began, while there is one; else when the last one
    /// ended.
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Up { recovered: Option<Instant> },
    Down { since: Instant },
}

/// Errors this soon after the brokers answered again belong to the outage
/// that just ended: as librdkafka reconnects it drops its bootstrap
/// connection, which can report every broker down for a moment.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

impl OutageReport {
    /// The report of a `role` ("source" or "sink") client of `topic` on
    /// `brokers` (the cluster's label).
    pub(crate) fn new(role: &'static str, topic: &str, brokers: &str) -> OutageReport {
        OutageReport {
            role,
            topic: topic.to_string(),
            brokers: brokers.to_string(),
            down: AtomicBool::new(false),
            state: Mutex::new(State::Up { recovered: None }),
        }
    }

    /// A request failed because the brokers are away: the first failure
    /// of an outage is logged at warn, the others at debug.
    pub(crate) fn unreachable(&self, reason: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match *state {
            State::Up { recovered: Some(at) } if at.elapsed() < SETTLE => {
                tracing::debug!(
                    "{} of topic '{}': {reason} (just after reconnecting)",
                    self.role,
                    self.topic
                );
                return;
            }
            State::Down { .. } => {
                tracing::debug!("{} of topic '{}': {reason} (still retrying)", self.role, self.topic);
                return;
            }
            State::Up { .. } => {}
        }
        *state = State::Down { since: Instant::now() };
        self.down.store(true, Ordering::Release);
        tracing::warn!(
            "{role} degraded: Kafka at {} is unreachable for topic '{}' ({reason}); the {role} waits \
             and retries with backoff",
            self.brokers,
            self.topic,
            role = self.role,
        );
    }

    /// The brokers answered: ends an outage, if there is one.
    pub(crate) fn reachable(&self) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let State::Down { since: at } = *state {
            *state = State::Up { recovered: Some(Instant::now()) };
            self.down.store(false, Ordering::Release);
            tracing::warn!(
                "{} recovered: Kafka at {} is reachable again for topic '{}' after {:.1} s",
                self.role,
                self.brokers,
                self.topic,
                at.elapsed().as_secs_f64()
            );
        }
    }

    /// Whether an outage is going on.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }
}

/// Errors that last only while the brokers (or a group coordinator) are
/// away; librdkafka retries the requests that got them.
pub(crate) fn is_transient(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode::*;
    matches!(
        code,
        BrokerTransportFailure
            | AllBrokersDown
            | OperationTimedOut
            | RequestTimedOut
            | NetworkException
            | WaitingForCoordinator
            | CoordinatorNotAvailable
            | NotCoordinator
            | CoordinatorLoadInProgress
            | Resolve
            | TimedOutQueue
    )
}
