//! Where the brokers are: `embedded` or a `host:port` list, resolved into a
//! [`Cluster`] that every client of a job shares.

use super::{EmbeddedCluster, KafkaConfig, KafkaError, WeirContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The `brokers` setting of a job file or a `--brokers` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerSpec {
    /// `"embedded"`: a mock cluster inside this process, gone when it ends.
    Embedded,
    /// A bootstrap list, `host:port[,host:port…]`.
    List(String),
}

impl FromStr for BrokerSpec {
    type Err = KafkaError;

    fn from_str(text: &str) -> Result<BrokerSpec, KafkaError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("embedded") {
            return Ok(BrokerSpec::Embedded);
        }
        let bad = || KafkaError::BadBrokers(text.to_string());
        let mut list = Vec::new();
        for entry in text.split(',') {
            let entry = entry.trim();
            // `host:port`; an IPv6 host is bracketed, so the port follows the
            // last colon either way.
            let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
            if host.is_empty() || host.contains(char::is_whitespace) || port.parse::<u16>().is_err() {
                return Err(bad());
            }
            list.push(entry);
        }
        Ok(BrokerSpec::List(list.join(",")))
    }
}

impl fmt::Display for BrokerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerSpec::Embedded => f.write_str("embedded"),
            BrokerSpec::List(list) => f.write_str(list),
        }
    }
}

impl Serialize for BrokerSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BrokerSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BrokerSpec, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Resolved brokers: the bootstrap list, the client settings, and for
/// `embedded` the in-process cluster itself. Cloning is cheap and shares the
/// cluster; the embedded broker stops when the last clone is dropped, so
/// sources and sinks keep one.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    bootstrap: String,
    label: String,
    config: KafkaConfig,
    embedded: Option<Arc<EmbeddedCluster>>,
}

impl Cluster {
    /// Resolves `spec`: starts an embedded cluster, or checks that the listed
    /// brokers answer (see [`Cluster::external`]).
    pub fn connect(spec: &BrokerSpec, config: KafkaConfig) -> Result<Cluster, KafkaError> {
        match spec {
            BrokerSpec::Embedded => Cluster::embedded(config),
            BrokerSpec::List(list) => Cluster::external(list, config),
        }
    }

    /// Starts an in-process cluster of `config.embedded_brokers` brokers.
    pub fn embedded(config: KafkaConfig) -> Result<Cluster, KafkaError> {
        let cluster = EmbeddedCluster::start(config.embedded_brokers)?;
        let bootstrap = cluster.bootstrap().to_string();
        let label = format!("the embedded broker ({bootstrap})");
        Ok(Cluster { inner: Arc::new(Inner { bootstrap, label, config, embedded: Some(Arc::new(cluster)) }) })
    }

    /// Uses the brokers at `bootstrap` once one of them answers a metadata
    /// request. It tries `config.connect_attempts` times, waiting with
    /// exponential backoff in between, and logs each failed attempt.
    pub fn external(bootstrap: &str, config: KafkaConfig) -> Result<Cluster, KafkaError> {
        let cluster = Cluster::unchecked(bootstrap, config);
        let probe = cluster.metadata_client()?;
        // A broker that is up answers metadata at once; a short wait per
        // attempt leaves the time to the backoff between attempts.
        let timeout = cluster.config().request_timeout.min(std::time::Duration::from_secs(3));
        cluster.retry("reach the brokers", || {
            probe.fetch_metadata(None, timeout).map(drop).map_err(|e| e.to_string())
        })?;
        Ok(cluster)
    }

    /// Uses the brokers at `bootstrap` without checking that they answer.
    pub fn unchecked(bootstrap: &str, config: KafkaConfig) -> Cluster {
        let bootstrap = bootstrap.to_string();
        Cluster { inner: Arc::new(Inner { label: bootstrap.clone(), bootstrap, config, embedded: None }) }
    }

    /// The bootstrap list clients connect to.
    pub fn bootstrap(&self) -> &str {
        &self.inner.bootstrap
    }

    /// How messages name these brokers.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The client settings.
    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    /// The same brokers (and, for `embedded`, the same in-process cluster)
    /// for clients that also get `properties`, librdkafka properties that
    /// win over the shared settings. A job's source and sink each use one,
    /// so their `[source.kafka]` and `[sink.kafka]` tables stay apart.
    pub fn with_properties(&self, properties: &BTreeMap<String, String>) -> Cluster {
        let mut config = self.inner.config.clone();
        config.properties.extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
        Cluster {
            inner: Arc::new(Inner {
                bootstrap: self.inner.bootstrap.clone(),
                label: self.inner.label.clone(),
                config,
                embedded: self.inner.embedded.clone(),
            }),
        }
    }

    /// The in-process cluster, for `embedded` (for creating topics and
    /// injecting faults).
    pub fn embedded_cluster(&self) -> Option<&EmbeddedCluster> {
        self.inner.embedded.as_deref()
    }

    /// Runs `attempt` up to `connect_attempts` times with backoff in
    /// between; the error names the brokers and the last failure.
    pub(crate) fn retry<T>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Result<T, String>,
    ) -> Result<T, KafkaError> {
        let attempts = self.config().connect_attempts.max(1);
        let mut waits = self.config().backoff();
        let mut last = String::new();
        for n in 1..=attempts {
            match attempt() {
                Ok(value) => return Ok(value),
                Err(reason) => last = reason,
            }
            if n < attempts {
                let wait = waits.next().unwrap_or(self.config().backoff_max);
                tracing::warn!(
                    "cannot {what} at {} (attempt {n} of {attempts}): {last}; retrying in {}",
                    self.label(),
                    crate::duration::format_duration(wait)
                );
                std::thread::sleep(wait);
            }
        }
        Err(KafkaError::Unreachable { brokers: self.label().to_string(), attempts, reason: last })
    }

    /// A client for metadata and watermark requests.
    pub(crate) fn metadata_client(&self) -> Result<BaseConsumer<WeirContext>, KafkaError> {
        self.config()
            .admin(self.bootstrap())
            .create_with_context(WeirContext::default())
            .map_err(|e| self.client_error("create a client", e))
    }

    pub(crate) fn client_error(&self, action: &str, e: impl fmt::Display) -> KafkaError {
        KafkaError::Client {
            brokers: self.label().to_string(),
            action: action.to_string(),
            reason: e.to_string(),
        }
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster").field("brokers", &self.inner.label).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_specs() {
        assert_eq!("embedded".parse::<BrokerSpec>().unwrap(), BrokerSpec::Embedded);
        assert_eq!(
            " localhost:9092, 10.0.0.1:9093 ".parse::<BrokerSpec>().unwrap(),
            BrokerSpec::List("localhost:9092,10.0.0.1:9093".into())
        );
        assert_eq!("[::1]:9092".parse::<BrokerSpec>().unwrap(), BrokerSpec::List("[::1]:9092".into()));
        for bad in ["", "localhost", "host:port", ":9092", "a:1,,b:2", "a b:1"] {
            let err = bad.parse::<BrokerSpec>().unwrap_err().to_string();
            assert!(err.contains("embedded"), "{bad}: {err}");
        }
    }

    #[test]
    fn unreachable_brokers_fail_after_the_configured_attempts() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = KafkaConfig {
            connect_attempts: 2,
            backoff: std::time::Duration::from_millis(10),
            request_timeout: std::time::Duration::from_millis(300),
            ..KafkaConfig::default()
        };
        let started = std::time::Instant::now();
        let err = Cluster::external(&format!("127.0.0.1:{port}"), config).unwrap_err().to_string();
        assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("2 attempt"), "{err}");
        assert!(err.contains("weir dev-broker"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
