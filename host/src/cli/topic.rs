//! `weir topic create|describe|list`, in place of `kafka-topics.sh`.

use anyhow::bail;
use weir::kafka::{BrokerSpec, Cluster, KafkaConfig, KafkaError};

#[derive(clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// Show a topic's partitions, leaders, replicas and offsets.
    Describe(DescribeArgs),
    /// List the topics.
    List(ListArgs),
}

#[derive(clap::Args)]
pub struct Brokers {
    /// The brokers, host:port[,host:port…] (a `weir dev-broker`, say).
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// How many times to try reaching the brokers, with exponential backoff.
    #[arg(long, default_value_t = 6)]
    retries: u32,
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    brokers: Brokers,
    /// The topic's name.
    #[arg(long)]
    topic: String,
    /// How many partitions.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// How many replicas of each partition.
    #[arg(long, default_value_t = 1)]
    replication: i32,
    /// Succeed if the topic exists already.
    #[arg(long)]
    if_not_exists: bool,
}

#[derive(clap::Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    brokers: Brokers,
    /// The topic's name.
    #[arg(long)]
    topic: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    brokers: Brokers,
    /// Print JSON instead of one line per topic.
    #[arg(long)]
    json: bool,
}

pub fn run(command: TopicCommand) -> anyhow::Result<()> {
    match command {
        TopicCommand::Create(args) => {
            let cluster = connect(&args.brokers.brokers, args.brokers.retries)?;
            match cluster.create_topic(&args.topic, args.partitions, args.replication) {
                Ok(()) => println!(
                    "created topic '{}' with {} partition(s), replication {}, on {}",
                    args.topic,
                    args.partitions,
                    args.replication,
                    cluster.label()
                ),
                Err(KafkaError::TopicExists { .. }) if args.if_not_exists => {
                    println!("topic '{}' exists already on {}", args.topic, cluster.label())
                }
                Err(e) => return Err(e.into()),
            }
        }
        TopicCommand::Describe(args) => {
            let cluster = connect(&args.brokers.brokers, args.brokers.retries)?;
            let info = cluster.describe_topic(&args.topic)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!(
                    "topic {}: {} partition(s), {} message(s)",
                    info.name,
                    info.partitions.len(),
                    info.messages()
                );
                println!(
                    "{:>9}  {:>6}  {:<10}  {:<10}  {:>12}  {:>12}",
                    "partition", "leader", "replicas", "isr", "low", "high"
                );
                for p in &info.partitions {
                    println!(
                        "{:>9}  {:>6}  {:<10}  {:<10}  {:>12}  {:>12}",
                        p.id,
                        p.leader,
                        ids(&p.replicas),
                        ids(&p.isr),
                        p.low,
                        p.high
                    );
                }
            }
        }
        TopicCommand::List(args) => {
            let cluster = connect(&args.brokers.brokers, args.brokers.retries)?;
            let topics = cluster.list_topics()?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&topics)?);
            } else {
                let width = topics.iter().map(|t| t.name.len()).max().unwrap_or(0);
                for t in &topics {
                    println!("{:<width$}  {} partition(s)", t.name, t.partitions);
                }
            }
        }
    }
    Ok(())
}

fn ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Reaches the brokers of a command that runs in its own process, where an
/// embedded broker would vanish with the command.
pub fn connect(brokers: &str, retries: u32) -> anyhow::Result<Cluster> {
    connect_with(brokers, retries, &[])
}

/// [`connect`], with librdkafka properties for the clients.
pub fn connect_with(brokers: &str, retries: u32, properties: &[(&str, &str)]) -> anyhow::Result<Cluster> {
    match brokers.parse::<BrokerSpec>()? {
        BrokerSpec::Embedded => bail!(
            "--brokers embedded starts a broker inside this one command, which is gone when it exits; \
             start a shared one with `weir dev-broker --listen 127.0.0.1:9092` and pass --brokers 127.0.0.1:9092"
        ),
        BrokerSpec::List(list) => {
            let mut config = KafkaConfig { connect_attempts: retries.max(1), ..KafkaConfig::default() };
            config.properties.extend(properties.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Ok(Cluster::external(&list, config)?)
        }
    }
}
