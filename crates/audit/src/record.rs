//! The record format: one JSON object per line, hash-chained.
//!
//! A line is the JSON of a [`Payload`] (sequence number, previous record's hash, body) with a
//! final `"hash"` member appended: the SHA-256 of the payload's exact bytes. Hashing exact bytes
//! (not a re-serialisation) keeps verification independent of JSON formatting, and the lines stay
//! plain newline-delimited JSON that SQL engines and `jq` read directly.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The previous-hash of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HASH_HEX: usize = 64;
/// `,"hash":"` + 64 hex + `"}`
const SUFFIX_LEN: usize = 9 + HASH_HEX + 2;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered.
    Ok,
    /// Refused: not allowed (PERMISSION_DENIED).
    Denied,
    /// Refused: malformed or unknown input.
    Invalid,
    /// Refused: no valid token.
    Unauthenticated,
    /// Refused: over a quota.
    Quota,
    /// Refused: the hub was at its concurrency limit.
    Shed,
    /// The deadline passed.
    Timeout,
    /// The client went away.
    Cancelled,
    /// The hub failed.
    Error,
}

impl Outcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Quota => "quota",
            Outcome::Shed => "shed",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
            Outcome::Error => "error",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// What the hub records about one call. Keys are keyed hashes, never raw identifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Unique id of the call.
    pub call_id: String,
    /// When the call arrived, microseconds since the epoch.
    pub time_us: i64,
    /// Caller's department ("" when sign-in failed).
    pub dept: String,
    /// Caller's subject.
    pub subject: String,
    /// Caller's role.
    pub role: String,
    /// `Service/Method`.
    pub method: String,
    /// Tables the call touched.
    pub tables: Vec<String>,
    /// Columns returned.
    pub columns: Vec<String>,
    /// Grant the call used, if any.
    pub grant_id: Option<String>,
    /// Stated purpose.
    pub purpose: String,
    /// Keyed hashes of the keys looked up.
    pub key_hashes: Vec<String>,
    /// Rows returned.
    pub rows: u64,
    /// Bytes returned.
    pub bytes: u64,
    /// How the call ended.
    pub outcome: Outcome,
    /// The gRPC status code sent.
    pub code: i32,
    /// Time from arrival to answer, microseconds.
    pub latency_us: u64,
}

/// A signed statement of the chain's head, written at least when a segment is sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// When it was written, microseconds since the epoch.
    pub time_us: i64,
    /// Segment number it closes or sits in.
    pub segment: u64,
    /// Whether the segment ends here.
    pub seals: bool,
    /// Id of the signing key.
    pub key_id: String,
    /// Ed25519 signature (hex) of [`checkpoint_message`].
    pub sig: String,
}

/// The body of a line.
// Nearly every line is a call; boxing the entry would add an allocation per record on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// A call.
    Call(Entry),
    /// A signed checkpoint.
    Checkpoint(Checkpoint),
}

/// What is hashed: position in the chain plus the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// 1-based position in the whole log.
    pub seq: u64,
    /// Hash of the previous line ([`GENESIS`] for the first).
    pub prev: String,
    /// The record.
    #[serde(flatten)]
    pub body: Body,
}

/// A verified line.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The payload.
    pub payload: Payload,
    /// Its hash.
    pub hash: String,
}

/// The bytes a checkpoint signs: its place in the chain, the chain head it vouches for (which
/// covers every earlier record), and every field of the checkpoint itself.
pub fn checkpoint_message(seq: u64, prev: &str, c: &Checkpoint) -> Vec<u8> {
    format!(
        "citybrain-audit-checkpoint\n{seq}\n{prev}\n{}\n{}\n{}\n{}",
        c.time_us, c.segment, c.seals, c.key_id
    )
    .into_bytes()
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Encodes a payload as one line (with `\n`), returning the line and its hash. Hot path: one
/// serialisation and one SHA-256 per record.
pub fn encode(payload: &Payload) -> (Vec<u8>, String) {
    let mut line = serde_json::to_vec(payload).expect("payloads always serialise");
    let hash = hex(&Sha256::digest(&line));
    line.pop(); // the closing brace
    line.extend_from_slice(b",\"hash\":\"");
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    (line, hash)
}

/// Why a line does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Not of the line shape (torn, truncated, edited).
    Shape,
    /// The hash does not match the payload.
    Hash,
    /// The payload is not a record.
    Json,
}

/// Decodes one line (without its `\n`), checking its own hash.
pub fn decode(line: &[u8]) -> Result<Stored, LineError> {
    if line.len() <= SUFFIX_LEN || !line.ends_with(b"\"}") {
        return Err(LineError::Shape);
    }
    let cut = line.len() - SUFFIX_LEN;
    if &line[cut..cut + 9] != b",\"hash\":\"" {
        return Err(LineError::Shape);
    }
    let hash =
        std::str::from_utf8(&line[cut + 9..cut + 9 + HASH_HEX]).map_err(|_| LineError::Shape)?;
    let mut payload = Vec::with_capacity(cut + 1);
    payload.extend_from_slice(&line[..cut]);
    payload.push(b'}');
    if hex(&Sha256::digest(&payload)) != hash {
        return Err(LineError::Hash);
    }
    let payload: Payload = serde_json::from_slice(&payload).map_err(|_| LineError::Json)?;
    Ok(Stored {
        payload,
        hash: hash.to_owned(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(i: u64) -> Entry {
        Entry {
            call_id: format!("c{i}"),
            time_us: 1_700_000_000_000_000 + i as i64,
            dept: "civil-affairs".into(),
            subject: "s".into(),
            role: "consumer".into(),
            method: "CatalogService/GetStats".into(),
            tables: vec!["population.residents".into()],
            columns: vec![],
            grant_id: None,
            purpose: "低保审核 \"quoted\"".into(),
            key_hashes: vec![],
            rows: i,
            bytes: 10 * i,
            outcome: Outcome::Ok,
            code: 0,
            latency_us: 5,
        }
    }

    #[test]
    fn lines_round_trip_and_detect_edits() {
        let p = Payload {
            seq: 1,
            prev: GENESIS.into(),
            body: Body::Call(entry(3)),
        };
        let (line, hash) = encode(&p);
        assert_eq!(*line.last().unwrap(), b'\n');
        let body = &line[..line.len() - 1];
        let s = decode(body).unwrap();
        assert_eq!(s.payload, p);
        assert_eq!(s.hash, hash);
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["kind"], "call");
        assert_eq!(v["dept"], "civil-affairs");
        let mut edited = body.to_vec();
        let pos = edited.iter().position(|b| *b == b'3').unwrap();
        edited[pos] = b'4';
        assert!(decode(&edited).is_err());
        assert_eq!(decode(&body[..body.len() - 5]), Err(LineError::Shape));
    }
}
