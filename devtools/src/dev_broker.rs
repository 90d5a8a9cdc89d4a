//! The dev broker: an in-process Kafka broker made reachable at a fixed
//! address, so several processes can share one broker without Docker.
//!
//! The broker behind it (for `weir dev-broker`, librdkafka's mock cluster)
//! listens on an ephemeral port and can only change the address its
//! metadata advertises. So the dev broker listens itself on the fixed
//! address, makes metadata advertise that address, and forwards every
//! connection to the broker. Because clients come back to the fixed address
//! after bootstrap too, every request passes the forwarder, which adds what
//! the mock broker lacks for admin tools:
//!
//! - CreateTopics (v0–v4) is answered here, creating the topic through
//!   [`Backend::create_topic`], and ApiVersions responses list it;
//! - Metadata responses name the first broker as the controller (the mock
//!   reports 0, which is no broker, and admin clients would wait for it
//!   forever).
//!
//! Responses go back in request order, as the protocol requires.

use crate::protocol::{self, TopicOutcome};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// The largest frame the forwarder accepts (Kafka's default maximum request
/// is 100 MiB).
const MAX_FRAME: usize = 100 << 20;

/// The single-broker cluster behind the forwarder.
pub trait Backend: Send + Sync + 'static {
    /// Where the broker really listens; every connection is forwarded there.
    fn address(&self) -> SocketAddr;
    /// Makes the broker's metadata advertise `host:port` as its address, so
    /// that clients come back through the forwarder.
    fn advertise(&self, host: &str, port: u16) -> Result<(), String>;
    /// Creates `topic` with `partitions` partitions and one replica.
    fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), TopicError>;
}

/// Why a [`Backend`] did not create a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic exists already.
    #[error("the topic exists already")]
    Exists,
    /// The request was refused, for the reason given.
    #[error("{0}")]
    Invalid(String),
    /// The broker failed otherwise.
    #[error("{0}")]
    Failed(String),
}

/// The dev broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevBrokerError {
    /// The listening address could not be bound or read.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address asked for.
        address: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
    /// The broker refused to advertise the forwarder's address.
    #[error("cannot make the broker advertise {address}: {reason}")]
    Advertise {
        /// The address to advertise.
        address: String,
        /// What the broker said.
        reason: String,
    },
    /// A topic given in [`DevBrokerOptions::topics`] could not be created.
    #[error("cannot create topic '{topic}': {source}")]
    Topic {
        /// The topic.
        topic: String,
        /// Why not.
        source: TopicError,
    },
    /// The forwarder's thread could not be started.
    #[error("cannot start the forwarder thread: {0}")]
    Thread(io::Error),
}

/// How to start a dev broker.
#[derive(Debug, Clone)]
pub struct DevBrokerOptions {
    /// Where to listen; port 0 picks a free one (see [`DevBroker::address`]).
    pub listen: SocketAddr,
    /// Partitions of the topics in `topics`, and of topics created without
    /// a partition count (at least 1).
    pub partitions: i32,
    /// Topics to create at start.
    pub topics: Vec<String>,
}

/// A running dev broker. Dropping it stops it: the listener closes, open
/// connections are cut, and the backend is dropped when its last
/// connection thread ends.
pub struct DevBroker {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Registry,
    accept: Option<JoinHandle<()>>,
}

/// The open connections (client and upstream sockets), so that stopping
/// can cut them; each removes itself when it ends.
type Registry = Arc<Mutex<HashMap<u64, [TcpStream; 2]>>>;

impl DevBroker {
    /// Listens on `options.listen`, makes `backend` advertise that address,
    /// creates the topics, and starts forwarding.
    pub fn start(options: &DevBrokerOptions, backend: Arc<dyn Backend>) -> Result<DevBroker, DevBrokerError> {
        let listen_failed = |source| DevBrokerError::Listen { address: options.listen, source };
        let listener = TcpListener::bind(options.listen).map_err(listen_failed)?;
        let address = listener.local_addr().map_err(listen_failed)?;
        // Clients must come back here, not to the broker's own port. An
        // unspecified listen address (0.0.0.0) is advertised as loopback.
        let host = advertised_host(address);
        backend.advertise(&host, address.port()).map_err(|reason| DevBrokerError::Advertise {
            address: format!("{host}:{}", address.port()),
            reason,
        })?;
        let default_partitions = options.partitions.max(1);
        for topic in &options.topics {
            backend
                .create_topic(topic, default_partitions)
                .map_err(|source| DevBrokerError::Topic { topic: topic.clone(), source })?;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let connections = Registry::default();
        let shared = Forwarding { upstream: backend.address(), backend, default_partitions };
        let accept = {
            let stop = stop.clone();
            let connections = connections.clone();
            std::thread::Builder::new()
                .name("weir-dev-broker".into())
                .spawn(move || accept_loop(listener, shared, stop, connections))
                .map_err(DevBrokerError::Thread)?
        };
        Ok(DevBroker { address, stop, connections, accept: Some(accept) })
    }

    /// The address the forwarder listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bootstrap address, `host:port` (loopback if listening
    /// everywhere).
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", advertised_host(self.address), self.address.port())
    }
}

/// The host clients are sent to: loopback for an unspecified address.
fn advertised_host(address: SocketAddr) -> String {
    if address.ip().is_unspecified() { "127.0.0.1".to_string() } else { address.ip().to_string() }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop, which then sees `stop`.
        let _ = TcpStream::connect(self.bootstrap());
        for (_, pair) in self.connections.lock().unwrap_or_else(PoisonError::into_inner).drain() {
            for socket in pair {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// What every connection needs.
#[derive(Clone)]
struct Forwarding {
    backend: Arc<dyn Backend>,
    upstream: SocketAddr,
    default_partitions: i32,
}

fn accept_loop(listener: TcpListener, shared: Forwarding, stop: Arc<AtomicBool>, connections: Registry) {
    for (id, client) in (0u64..).zip(listener.incoming()) {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("dev broker: cannot accept a connection: {e}");
                continue;
            }
        };
        let peer = client.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        match Connection::open(client, &shared) {
            Ok((conn, handles)) => {
                connections.lock().unwrap_or_else(PoisonError::into_inner).insert(id, handles);
                tracing::debug!("dev broker: connection from {peer}");
                let done = connections.clone();
                conn.run(shared.clone(), move || {
                    done.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
                });
            }
            Err(e) => tracing::warn!("dev broker: cannot forward the connection from {peer}: {e}"),
        }
    }
}

/// A response the client is owed, in request order.
enum Owed {
    /// The mock broker will answer request `correlation_id`.
    Upstream { correlation_id: i32, api_key: i16, api_version: i16 },
    /// Answered here; sent once every earlier response has gone.
    Local(Vec<u8>),
}

/// One client connection and its connection to the mock broker.
struct Connection {
    client: TcpStream,
    upstream: TcpStream,
    /// Responses owed, and the client's write half (one lock, so that
    /// responses leave in order).
    owed: Arc<Mutex<(VecDeque<Owed>, TcpStream)>>,
}

impl Connection {
    fn open(client: TcpStream, shared: &Forwarding) -> io::Result<(Connection, [TcpStream; 2])> {
        let upstream = TcpStream::connect(shared.upstream)?;
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let handles = [client.try_clone()?, upstream.try_clone()?];
        let owed = Arc::new(Mutex::new((VecDeque::new(), client.try_clone()?)));
        Ok((Connection { client, upstream, owed }, handles))
    }

    /// Starts the two directions on their own threads; `ended` runs when
    /// the connection is over.
    fn run(self, shared: Forwarding, ended: impl FnOnce() + Send + 'static) {
        let Connection { client, upstream, owed } = self;
        let (Ok(upstream_read), Ok(client_again)) = (upstream.try_clone(), client.try_clone()) else {
            ended();
            return;
        };
        let back = owed.clone();
        let spawned = std::thread::Builder::new().name("weir-dev-broker-in".into()).spawn(move || {
            requests(client, upstream, owed, &shared);
            ended();
        });
        if spawned.is_err() {
            return;
        }
        let _ = std::thread::Builder::new()
            .name("weir-dev-broker-out".into())
            .spawn(move || responses(upstream_read, client_again, back));
    }
}

/// Reads one size-prefixed frame into `buf`; false at a clean end.
fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut size = [0u8; 4];
    match stream.read_exact(&mut size) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|&n| n <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad frame size"))?;
    buf.clear();
    buf.resize(len, 0);
    stream.read_exact(buf)?;
    Ok(true)
}

fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> io::Result<()> {
    let len = i32::try_from(frame.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame too big"))?;
    stream.write_all(&len.to_be_bytes())?;
    stream.write_all(frame)
}

/// Client to mock broker: forwards requests, answers CreateTopics itself.
fn requests(
    mut client: TcpStream,
    mut upstream: TcpStream,
    owed: Arc<Mutex<(VecDeque<Owed>, TcpStream)>>,
    shared: &Forwarding,
) {
    let mut frame = Vec::new();
    while let Ok(true) = read_frame(&mut client, &mut frame) {
        let header = protocol::request_header(&frame);
        if let Some(h) = header.filter(|h| {
            h.api_key == protocol::CREATE_TOPICS && h.api_version <= protocol::CREATE_TOPICS_MAX_VERSION
        }) {
            let response = create_topics(&frame, &h, shared);
            let mut guard = owed.lock().unwrap_or_else(PoisonError::into_inner);
            let (queue, out) = &mut *guard;
            if queue.is_empty() {
                if out.write_all(&response).is_err() {
                    break;
                }
            } else {
                queue.push_back(Owed::Local(response));
            }
            continue;
        }
        if let Some(h) = header {
            let answered = h.api_key != protocol::PRODUCE || protocol::produce_wants_response(&frame, &h);
            if answered {
                owed.lock().unwrap_or_else(PoisonError::into_inner).0.push_back(Owed::Upstream {
                    correlation_id: h.correlation_id,
                    api_key: h.api_key,
                    api_version: h.api_version,
                });
            }
        }
        if write_frame(&mut upstream, &frame).is_err() {
            break;
        }
    }
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Both);
}

/// Mock broker to client: passes responses on, patched where needed, with
/// any locally answered responses that were waiting behind them.
fn responses(mut upstream: TcpStream, client: TcpStream, owed: Arc<Mutex<(VecDeque<Owed>, TcpStream)>>) {
    let mut frame = Vec::new();
    while let Ok(true) = read_frame(&mut upstream, &mut frame) {
        let correlation_id = frame.get(..4).and_then(|b| b.try_into().ok()).map(i32::from_be_bytes);
        let mut guard = owed.lock().unwrap_or_else(PoisonError::into_inner);
        let (queue, out) = &mut *guard;
        let position = queue.iter().position(
            |o| matches!(o, Owed::Upstream { correlation_id: c, .. } if Some(*c) == correlation_id),
        );
        let kind = position.and_then(|i| queue.remove(i)).and_then(|o| match o {
            Owed::Upstream { api_key, api_version, .. } => Some((api_key, api_version)),
            Owed::Local(_) => None,
        });
        let patched = match kind {
            Some((protocol::API_VERSIONS, version)) => protocol::add_api_version(
                &frame,
                version,
                protocol::CREATE_TOPICS,
                0,
                protocol::CREATE_TOPICS_MAX_VERSION,
            ),
            Some((protocol::METADATA, version)) => {
                protocol::fix_metadata_controller(&mut frame, version);
                None
            }
            _ => None,
        };
        if write_frame(out, patched.as_deref().unwrap_or(&frame)).is_err() {
            break;
        }
        while let Some(Owed::Local(_)) = queue.front() {
            if let Some(Owed::Local(response)) = queue.pop_front()
                && out.write_all(&response).is_err()
            {
                break;
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Creates the requested topics through the backend; returns the whole
/// response frame.
fn create_topics(frame: &[u8], header: &protocol::RequestHeader, shared: &Forwarding) -> Vec<u8> {
    let Some(request) = protocol::create_topics_request(frame, header) else {
        return protocol::create_topics_response(header.correlation_id, header.api_version, &[]);
    };
    let outcomes: Vec<TopicOutcome> = request
        .topics
        .iter()
        .map(|t| {
            let outcome =
                |error: i16, message: Option<String>| TopicOutcome { name: t.name.clone(), error, message };
            let partitions = match (t.assigned_partitions, t.partitions) {
                (n, _) if n > 0 => n,
                (_, -1) => shared.default_partitions,
                (_, n) => n,
            };
            let replication = if t.replication == -1 { 1 } else { i32::from(t.replication) };
            if partitions < 1 {
                return outcome(protocol::INVALID_PARTITIONS, Some(format!("{partitions} partitions")));
            }
            if replication != 1 {
                return outcome(
                    protocol::INVALID_REPLICATION_FACTOR,
                    Some(format!("the dev broker has 1 broker, so replication must be 1, not {replication}")),
                );
            }
            if request.validate_only {
                return outcome(0, None);
            }
            match shared.backend.create_topic(&t.name, partitions) {
                Ok(()) => {
                    tracing::info!("dev broker: created topic '{}' with {partitions} partition(s)", t.name);
                    outcome(0, None)
                }
                Err(TopicError::Exists) => outcome(
                    protocol::TOPIC_ALREADY_EXISTS,
                    Some(format!("topic '{}' already exists", t.name)),
                ),
                Err(TopicError::Invalid(reason)) => outcome(protocol::INVALID_REQUEST, Some(reason)),
                Err(TopicError::Failed(reason)) => outcome(protocol::UNKNOWN_SERVER_ERROR, Some(reason)),
            }
        })
        .collect();
    protocol::create_topics_response(header.correlation_id, header.api_version, &outcomes)
}
