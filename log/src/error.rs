//! The one error type of `cairn-log`.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("record at offset {offset} is corrupt: {detail}")]
    Corrupt { offset: u64, detail: String },
    #[error(
        "hash chain broken at offset {offset}: its prev_hash does not match the record before"
    )]
    ChainBroken { offset: u64 },
    #[error(
        "record at offset {offset} has format {found}, this binary reads formats up to \
         {supported}: the log was written by a newer cairn; upgrade this binary"
    )]
    UnsupportedFormat {
        offset: u64,
        found: u16,
        supported: u16,
    },
    #[error("record at offset {offset} does not decode: {source}")]
    Decode {
        offset: u64,
        /// JSON's or MessagePack's error, by the record's format.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("event does not encode: {0}")]
    Encode(serde_json::Error),
    #[error("event does not encode: {0}")]
    Pack(crate::indexed::Error),
    #[error("record is {len} bytes encoded, the limit is {limit}")]
    RecordTooLarge { len: usize, limit: usize },
    #[error("batch of {len} entries is over the limit of {limit}")]
    BatchTooLarge { len: usize, limit: usize },
    #[error("append of an empty batch")]
    EmptyBatch,
    #[cfg(feature = "engine")]
    #[error("the log at {path} is {reason}")]
    Open { path: String, reason: String },
    #[cfg(feature = "engine")]
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    #[cfg(feature = "engine")]
    #[error("append of {bytes} encoded bytes is over the limit of {limit}")]
    AppendTooLarge { bytes: usize, limit: usize },
    #[cfg(feature = "engine")]
    #[error("this member is not the leader{}", match leader { Some(l) => format!("; the leader is at {l}"), None => "; no leader is known".to_owned() })]
    NotLeader { leader: Option<String> },
    #[cfg(feature = "engine")]
    #[error("replication: {0}")]
    Raft(String),
    #[cfg(feature = "engine")]
    #[error("subscriber fell more than {limit} groups behind the live tail; resume from offset {resume_from}")]
    Lagged { resume_from: u64, limit: usize },
    #[cfg(feature = "engine")]
    #[error("the log is closed")]
    Closed,
    #[cfg(feature = "engine")]
    #[error("{limit} subscribers already follow the log")]
    TooManySubscribers { limit: usize },
}
