//! The little of the Kafka wire protocol the dev broker's forwarder needs:
//! request headers, CreateTopics (v0–v4) requests and responses, adding
//! CreateTopics to an ApiVersions (v0–v2) response, the `acks` of a Produce
//! request, and the controller id of a Metadata response (the mock cluster
//! reports controller 0, which is no broker, and admin clients then wait
//! for a controller forever).
//!
//! Frames here exclude the 4-byte size prefix, except where a function says
//! it returns a whole frame.
//!
//! It is written by hand rather than taken from the `kafka-protocol` crate:
//! that crate generates codecs for every message and version (about 90,000
//! lines, and the crc, crc32c and uuid crates) and decodes whole messages,
//! where the forwarder reads a few fields, patches two responses in place,
//! and passes every other frame on untouched.

/// Request kinds (Kafka's API keys).
pub(crate) const PRODUCE: i16 = 0;
pub(crate) const METADATA: i16 = 3;
pub(crate) const API_VERSIONS: i16 = 18;
pub(crate) const CREATE_TOPICS: i16 = 19;
/// The CreateTopics versions the forwarder answers (the non-flexible ones,
/// which librdkafka uses).
pub(crate) const CREATE_TOPICS_MAX_VERSION: i16 = 4;

/// Error codes the forwarder returns.
pub(crate) const TOPIC_ALREADY_EXISTS: i16 = 36;
pub(crate) const INVALID_PARTITIONS: i16 = 37;
pub(crate) const INVALID_REPLICATION_FACTOR: i16 = 38;
pub(crate) const INVALID_REQUEST: i16 = 42;
pub(crate) const UNKNOWN_SERVER_ERROR: i16 = -1;

/// Reads big-endian protocol fields; every read checks the length.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn i8(&mut self) -> Option<i8> {
        Some(i8::from_be_bytes(self.take(1)?.try_into().ok()?))
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.take(1)?.first()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// A (nullable) string with an i16 length; None for null.
    fn string(&mut self) -> Option<Option<&'a str>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        Some(Some(std::str::from_utf8(self.take(len as usize)?).ok()?))
    }

    /// A compact (nullable) string: uvarint length + 1, 0 for null.
    fn compact_string(&mut self) -> Option<()> {
        let len = self.uvarint()?;
        if len > 0 {
            self.take(usize::try_from(len - 1).ok()?)?;
        }
        Some(())
    }

    /// An i32 array length (-1 for null is read as 0).
    fn array_len(&mut self) -> Option<usize> {
        usize::try_from(self.i32()?.max(0)).ok()
    }

    /// A compact array length: uvarint length + 1, 0 for null.
    fn compact_array_len(&mut self) -> Option<usize> {
        usize::try_from(self.uvarint()?.saturating_sub(1)).ok()
    }

    fn tagged_fields(&mut self) -> Option<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.take(usize::try_from(size).ok()?)?;
        }
        Some(())
    }
}

/// The start of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    /// Where the header ends, for requests whose header has no tagged fields
    /// (non-flexible versions).
    body: usize,
}

/// Reads a request's header.
pub(crate) fn request_header(frame: &[u8]) -> Option<RequestHeader> {
    let mut r = Reader::new(frame);
    let api_key = r.i16()?;
    let api_version = r.i16()?;
    let correlation_id = r.i32()?;
    r.string()?; // client id, a plain nullable string even in flexible headers
    Some(RequestHeader { api_key, api_version, correlation_id, body: r.pos })
}

/// Whether a Produce request expects a response (`acks` is not 0).
pub(crate) fn produce_wants_response(frame: &[u8], header: &RequestHeader) -> bool {
    let parse = || -> Option<i16> {
        let mut r = Reader::new(frame);
        r.pos = header.body;
        let flexible = header.api_version >= 9;
        if flexible {
            r.tagged_fields()?;
        }
        if header.api_version >= 3 {
            if flexible {
                r.compact_string()?;
            } else {
                r.string()?;
            }
        }
        r.i16()
    };
    // If the request cannot be read, assume the broker answers it.
    parse() != Some(0)
}

/// One topic of a CreateTopics request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewTopicRequest {
    pub name: String,
    /// -1: the broker's default.
    pub partitions: i32,
    /// -1: the broker's default.
    pub replication: i16,
    /// Partitions given by explicit replica assignment (0 if none).
    pub assigned_partitions: i32,
}

/// A CreateTopics request (v0–v4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateTopicsRequest {
    pub topics: Vec<NewTopicRequest>,
    pub validate_only: bool,
}

/// Reads a CreateTopics request of a non-flexible version.
pub(crate) fn create_topics_request(frame: &[u8], header: &RequestHeader) -> Option<CreateTopicsRequest> {
    if header.api_version > CREATE_TOPICS_MAX_VERSION {
        return None;
    }
    let mut r = Reader::new(frame);
    r.pos = header.body;
    let mut topics = Vec::new();
    for _ in 0..r.array_len()? {
        let name = r.string()??.to_string();
        let partitions = r.i32()?;
        let replication = r.i16()?;
        let assignments = r.array_len()?;
        for _ in 0..assignments {
            r.i32()?;
            for _ in 0..r.array_len()? {
                r.i32()?;
            }
        }
        for _ in 0..r.array_len()? {
            r.string()?;
            r.string()?;
        }
        let assigned_partitions = i32::try_from(assignments).ok()?;
        topics.push(NewTopicRequest { name, partitions, replication, assigned_partitions });
    }
    r.i32()?; // timeout
    let validate_only = header.api_version >= 1 && r.i8()? != 0;
    Some(CreateTopicsRequest { topics, validate_only })
}

/// One topic's outcome in a CreateTopics response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicOutcome {
    pub name: String,
    pub error: i16,
    pub message: Option<String>,
}

/// A whole CreateTopics response frame (with its size prefix).
pub(crate) fn create_topics_response(
    correlation_id: i32,
    version: i16,
    outcomes: &[TopicOutcome],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&correlation_id.to_be_bytes());
    if version >= 2 {
        body.extend_from_slice(&0i32.to_be_bytes()); // throttle time
    }
    body.extend_from_slice(&(outcomes.len() as i32).to_be_bytes());
    for o in outcomes {
        put_string(&mut body, Some(&o.name));
        body.extend_from_slice(&o.error.to_be_bytes());
        if version >= 1 {
            put_string(&mut body, o.message.as_deref());
        }
    }
    framed(body)
}

fn put_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.extend_from_slice(&(-1i16).to_be_bytes()),
        Some(s) => {
            let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
            out.extend_from_slice(&(bytes.len() as i16).to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

fn framed(body: Vec<u8>) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Adds `(api_key, min, max)` to a successful ApiVersions response of
/// version 0–2 that lacks it. Returns the new frame (without size prefix),
/// or None to pass the response on unchanged.
pub(crate) fn add_api_version(
    frame: &[u8],
    version: i16,
    api_key: i16,
    min: i16,
    max: i16,
) -> Option<Vec<u8>> {
    if !(0..=2).contains(&version) {
        return None;
    }
    let mut r = Reader::new(frame);
    r.i32()?; // correlation id
    if r.i16()? != 0 {
        return None;
    }
    let count_at = r.pos;
    let count = r.array_len()?;
    let entries_at = r.pos;
    for _ in 0..count {
        if r.i16()? == api_key {
            return None;
        }
        r.i16()?;
        r.i16()?;
    }
    let entries_end = r.pos;
    let mut out = Vec::with_capacity(frame.len() + 6);
    out.extend_from_slice(&frame[..count_at]);
    out.extend_from_slice(&(i32::try_from(count).ok()? + 1).to_be_bytes());
    out.extend_from_slice(&frame[entries_at..entries_end]);
    for v in [api_key, min, max] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&frame[entries_end..]);
    Some(out)
}

/// In a Metadata response (any version from 1), replaces a controller id
/// that names no listed broker with the first broker's id. Returns whether
/// it changed the frame.
pub(crate) fn fix_metadata_controller(frame: &mut [u8], version: i16) -> bool {
    let Some((controller_at, controller, first_broker)) = metadata_controller(frame, version) else {
        return false;
    };
    match first_broker {
        Some(id) if id != controller => {
            frame[controller_at..controller_at + 4].copy_from_slice(&id.to_be_bytes());
            true
        }
        _ => false,
    }
}

/// (where the controller id is, the controller id, the first broker's id if
/// the controller is not among the brokers).
fn metadata_controller(frame: &[u8], version: i16) -> Option<(usize, i32, Option<i32>)> {
    if version < 1 {
        return None;
    }
    let flexible = version >= 9;
    let mut r = Reader::new(frame);
    r.i32()?; // correlation id
    if flexible {
        r.tagged_fields()?;
    }
    if version >= 3 {
        r.i32()?; // throttle time
    }
    let brokers = if flexible { r.compact_array_len()? } else { r.array_len()? };
    let mut ids = Vec::with_capacity(brokers.min(64));
    for _ in 0..brokers {
        ids.push(r.i32()?);
        if flexible {
            r.compact_string()?;
        } else {
            r.string()?;
        }
        r.i32()?; // port
        if flexible {
            r.compact_string()?;
            r.tagged_fields()?;
        } else {
            r.string()?; // rack
        }
    }
    if version >= 2 {
        if flexible {
            r.compact_string()?;
        } else {
            r.string()?; // cluster id
        }
    }
    let at = r.pos;
    let controller = r.i32()?;
    let replacement = if ids.contains(&controller) { None } else { ids.first().copied() };
    Some((at, controller, replacement))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        put_string(out, Some(s));
    }

    fn header(key: i16, version: i16, corr: i32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&key.to_be_bytes());
        h.extend_from_slice(&version.to_be_bytes());
        h.extend_from_slice(&corr.to_be_bytes());
        string(&mut h, "weir");
        h
    }

    #[test]
    fn reads_a_create_topics_request() {
        let mut f = header(CREATE_TOPICS, 4, 7);
        f.extend_from_slice(&2i32.to_be_bytes());
        string(&mut f, "readings");
        f.extend_from_slice(&3i32.to_be_bytes());
        f.extend_from_slice(&1i16.to_be_bytes());
        f.extend_from_slice(&0i32.to_be_bytes()); // assignments
        f.extend_from_slice(&1i32.to_be_bytes()); // configs
        string(&mut f, "retention.ms");
        put_string(&mut f, None);
        string(&mut f, "out");
        f.extend_from_slice(&(-1i32).to_be_bytes());
        f.extend_from_slice(&(-1i16).to_be_bytes());
        f.extend_from_slice(&2i32.to_be_bytes()); // two assigned partitions
        for p in 0..2i32 {
            f.extend_from_slice(&p.to_be_bytes());
            f.extend_from_slice(&1i32.to_be_bytes());
            f.extend_from_slice(&1i32.to_be_bytes());
        }
        f.extend_from_slice(&0i32.to_be_bytes());
        f.extend_from_slice(&5000i32.to_be_bytes());
        f.push(1);
        let h = request_header(&f).unwrap();
        assert_eq!((h.api_key, h.api_version, h.correlation_id), (CREATE_TOPICS, 4, 7));
        let req = create_topics_request(&f, &h).unwrap();
        assert!(req.validate_only);
        assert_eq!(
            req.topics,
            [
                NewTopicRequest {
                    name: "readings".into(),
                    partitions: 3,
                    replication: 1,
                    assigned_partitions: 0
                },
                NewTopicRequest {
                    name: "out".into(),
                    partitions: -1,
                    replication: -1,
                    assigned_partitions: 2
                },
            ]
        );
        // A truncated request is refused, not misread.
        assert_eq!(create_topics_request(&f[..f.len() - 5], &h), None);
    }

    #[test]
    fn writes_create_topics_responses_per_version() {
        let outcomes = [TopicOutcome { name: "t".into(), error: 36, message: Some("exists".into()) }];
        let v0 = create_topics_response(9, 0, &outcomes);
        assert_eq!(v0, [0, 0, 0, 13, 0, 0, 0, 9, 0, 0, 0, 1, 0, 1, b't', 0, 36]);
        let v2 = create_topics_response(9, 2, &outcomes);
        let mut expected = vec![0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 36, 0, 6];
        expected.extend_from_slice(b"exists");
        let len = (expected.len() - 4) as i32;
        expected[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(v2, expected);
    }

    #[test]
    fn adds_create_topics_to_api_versions() {
        let mut f = Vec::new();
        f.extend_from_slice(&5i32.to_be_bytes());
        f.extend_from_slice(&0i16.to_be_bytes());
        f.extend_from_slice(&1i32.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 0, 9]);
        f.extend_from_slice(&0i32.to_be_bytes()); // throttle (v1+)
        let out = add_api_version(&f, 1, CREATE_TOPICS, 0, 4).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&5i32.to_be_bytes());
        expected.extend_from_slice(&0i16.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 9, 0, 19, 0, 0, 0, 4]);
        expected.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(out, expected);
        // Present already, or an error response: unchanged.
        assert_eq!(add_api_version(&out, 1, CREATE_TOPICS, 0, 4), None);
        let mut failed = f.clone();
        failed[5] = 35;
        assert_eq!(add_api_version(&failed, 1, CREATE_TOPICS, 0, 4), None);
    }

    #[test]
    fn fixes_the_metadata_controller() {
        // v1: brokers [(1, "127.0.0.1", 9092, rack null)], controller 0, no topics.
        let mut f = Vec::new();
        f.extend_from_slice(&3i32.to_be_bytes());
        f.extend_from_slice(&1i32.to_be_bytes());
        f.extend_from_slice(&1i32.to_be_bytes());
        string(&mut f, "127.0.0.1");
        f.extend_from_slice(&9092i32.to_be_bytes());
        put_string(&mut f, None);
        f.extend_from_slice(&0i32.to_be_bytes());
        f.extend_from_slice(&0i32.to_be_bytes());
        let mut fixed = f.clone();
        assert!(fix_metadata_controller(&mut fixed, 1));
        assert_eq!(&fixed[fixed.len() - 8..fixed.len() - 4], &1i32.to_be_bytes());
        assert!(!fix_metadata_controller(&mut fixed, 1));

        // v9 (flexible): header tags, throttle, compact fields.
        let mut g = Vec::new();
        g.extend_from_slice(&3i32.to_be_bytes());
        g.push(0); // header tags
        g.extend_from_slice(&0i32.to_be_bytes());
        g.push(2); // one broker
        g.extend_from_slice(&1i32.to_be_bytes());
        g.push(10);
        g.extend_from_slice(b"127.0.0.1");
        g.extend_from_slice(&9092i32.to_be_bytes());
        g.push(0); // rack null
        g.push(0); // broker tags
        g.push(0); // cluster id null
        g.extend_from_slice(&0i32.to_be_bytes());
        g.push(1); // no topics
        let at = g.len() - 5;
        assert!(fix_metadata_controller(&mut g, 9));
        assert_eq!(&g[at..at + 4], &1i32.to_be_bytes());
    }

    #[test]
    fn reads_produce_acks() {
        for (version, acks, wants) in
            [(2i16, 0i16, false), (3, 0, false), (3, -1, true), (9, 0, false), (9, 1, true)]
        {
            let mut f = header(PRODUCE, version, 1);
            if version >= 9 {
                f.push(0); // header tags
                f.push(0); // transactional id null
            } else if version >= 3 {
                put_string(&mut f, None);
            }
            f.extend_from_slice(&acks.to_be_bytes());
            let h = request_header(&f).unwrap();
            assert_eq!(produce_wants_response(&f, &h), wants, "v{version} acks {acks}");
        }
    }
}
