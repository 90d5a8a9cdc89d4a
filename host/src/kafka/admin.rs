//! Topic admin: create, describe, list. On an embedded cluster topics are
//! created through the mock cluster's own call, elsewhere through the
//! CreateTopics request.

use super::{Cluster, KafkaError, WeirContext, block_on};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaRespErr;
use serde::Serialize;
use std::time::{Duration, Instant};

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    /// The partition id.
    pub id: i32,
    /// The leader's broker id (-1: none right now).
    pub leader: i32,
    /// The brokers holding a replica.
    pub replicas: Vec<i32>,
    /// The replicas in sync with the leader.
    pub isr: Vec<i32>,
    /// The first offset still held.
    pub low: i64,
    /// The high watermark: the offset the next message will get.
    pub high: i64,
}

/// A described topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// Its partitions, by id.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// Messages held in all partitions (high minus low watermarks).
    pub fn messages(&self) -> i64 {
        self.partitions.iter().map(|p| p.high - p.low).sum()
    }
}

/// A listed topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSummary {
    /// The topic's name.
    pub name: String,
    /// How many partitions it has.
    pub partitions: usize,
}

impl Cluster {
    /// Creates `topic` and waits until every partition has a leader, so it
    /// can be used at once. Fails with [`KafkaError::TopicExists`] if it
    /// exists.
    pub fn create_topic(&self, topic: &str, partitions: i32, replication: i32) -> Result<(), KafkaError> {
        let fail = |reason: String| KafkaError::Topic {
            brokers: self.label().to_string(),
            topic: topic.to_string(),
            action: "create",
            reason,
        };
        if let Some(embedded) = self.embedded_cluster() {
            embedded.create_topic(topic, partitions, replication)?;
        } else {
            let admin: AdminClient<WeirContext> = self
                .config()
                .admin(self.bootstrap())
                .create_with_context(WeirContext::default())
                .map_err(|e| self.client_error("create an admin client", e))?;
            let timeout = self.config().request_timeout;
            let options = AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout));
            let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
            let results = block_on(admin.create_topics([&new], &options)).map_err(|e| fail(e.to_string()))?;
            for result in results {
                match result {
                    Ok(_) => {}
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        return Err(KafkaError::TopicExists {
                            brokers: self.label().to_string(),
                            topic: topic.to_string(),
                        });
                    }
                    Err((_, code)) => return Err(fail(create_advice(code, partitions, replication))),
                }
            }
        }
        self.wait_for_topic(topic, usize::try_from(partitions).unwrap_or(0))
    }

    /// Creates `topic` unless it exists; returns whether it created it. An
    /// existing topic is kept whatever its partition count.
    pub fn ensure_topic(&self, topic: &str, partitions: i32, replication: i32) -> Result<bool, KafkaError> {
        match self.describe_topic(topic) {
            Ok(_) => return Ok(false),
            Err(KafkaError::UnknownTopic { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.create_topic(topic, partitions, replication) {
            Ok(()) => Ok(true),
            // Someone else created it in between.
            Err(KafkaError::TopicExists { .. }) => Ok(false),
            // A create that races another can time out on a broker that
            // answers the other first: the topic may exist all the same.
            Err(e) => match self.describe_topic(topic) {
                Ok(_) => Ok(false),
                Err(_) => Err(e),
            },
        }
    }

    /// The topic's partitions with leaders, replicas and watermarks.
    pub fn describe_topic(&self, topic: &str) -> Result<TopicInfo, KafkaError> {
        let client = self.metadata_client()?;
        self.describe_with(&client, topic)
    }

    pub(crate) fn describe_with(
        &self,
        client: &BaseConsumer<WeirContext>,
        topic: &str,
    ) -> Result<TopicInfo, KafkaError> {
        let timeout = self.config().request_timeout;
        let metadata = self.topic_metadata(client, topic)?;
        let mut partitions = Vec::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                let (low, high) =
                    client.fetch_watermarks(topic, p.id(), timeout).map_err(|e| KafkaError::Topic {
                        brokers: self.label().to_string(),
                        topic: topic.to_string(),
                        action: "describe",
                        reason: format!("cannot read the offsets of partition {}: {e}", p.id()),
                    })?;
                partitions.push(PartitionInfo {
                    id: p.id(),
                    leader: p.leader(),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                    low,
                    high,
                });
            }
        }
        partitions.sort_by_key(|p| p.id);
        Ok(TopicInfo { name: topic.to_string(), partitions })
    }

    /// Every topic, by name, without Kafka's internal ones (`__…`).
    pub fn list_topics(&self) -> Result<Vec<TopicSummary>, KafkaError> {
        let client = self.metadata_client()?;
        let metadata = client
            .fetch_metadata(None, self.config().request_timeout)
            .map_err(|e| self.client_error("list topics", e))?;
        let mut topics: Vec<TopicSummary> = metadata
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with("__") && t.error().is_none())
            .map(|t| TopicSummary { name: t.name().to_string(), partitions: t.partitions().len() })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Metadata of one existing topic.
    pub(crate) fn topic_metadata<C: rdkafka::consumer::ConsumerContext>(
        &self,
        client: &BaseConsumer<C>,
        topic: &str,
    ) -> Result<Metadata, KafkaError> {
        let metadata = client.fetch_metadata(Some(topic), self.config().request_timeout).map_err(|e| {
            KafkaError::Topic {
                brokers: self.label().to_string(),
                topic: topic.to_string(),
                action: "describe",
                reason: e.to_string(),
            }
        })?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(KafkaError::UnknownTopic {
                brokers: self.label().to_string(),
                topic: topic.to_string(),
            });
        };
        match t.error() {
            None if !t.partitions().is_empty() => Ok(metadata),
            None | Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
                Err(KafkaError::UnknownTopic { brokers: self.label().to_string(), topic: topic.to_string() })
            }
            Some(err) => Err(KafkaError::Topic {
                brokers: self.label().to_string(),
                topic: topic.to_string(),
                action: "describe",
                reason: super::embedded::err_text(err),
            }),
        }
    }

    /// Polls metadata until `topic` shows `partitions` partitions (at least
    /// one if 0), each with a leader; brokers create topics asynchronously.
    fn wait_for_topic(&self, topic: &str, partitions: usize) -> Result<(), KafkaError> {
        let client = self.metadata_client()?;
        let deadline = Instant::now() + self.config().request_timeout;
        loop {
            let last = match self.topic_metadata(&client, topic) {
                Ok(metadata) => {
                    let parts = metadata.topics().iter().flat_map(|t| t.partitions()).collect::<Vec<_>>();
                    if parts.len() >= partitions.max(1)
                        && parts.iter().all(|p| p.leader() >= 0 && p.error().is_none())
                    {
                        return Ok(());
                    }
                    format!(
                        "{} of {partitions} partition(s) have a leader",
                        parts.iter().filter(|p| p.leader() >= 0).count()
                    )
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(KafkaError::Topic {
                    brokers: self.label().to_string(),
                    topic: topic.to_string(),
                    action: "create",
                    reason: format!(
                        "the topic was not ready within {:?}: {last}",
                        self.config().request_timeout
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a CreateTopics error code means for the user.
fn create_advice(code: RDKafkaErrorCode, partitions: i32, replication: i32) -> String {
    match code {
        RDKafkaErrorCode::InvalidReplicationFactor => {
            format!(
                "replication factor {replication} is not possible here (more than the brokers?); try --replication 1"
            )
        }
        RDKafkaErrorCode::InvalidPartitions => format!("{partitions} is not a valid partition count"),
        RDKafkaErrorCode::InvalidTopic => {
            "the name is not a valid topic name (letters, digits, '.', '_', '-')".into()
        }
        RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::RequestTimedOut => {
            "the broker did not answer in time; check that it runs, or raise request_timeout".into()
        }
        other => other.to_string(),
    }
}
