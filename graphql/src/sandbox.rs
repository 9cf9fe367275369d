//! A task's stdout and stderr, read for `Task.output` from its agent's sandbox file API
//! (`GET /files/read`), so that a browser reads them through `/graphql` alone.

use std::time::Duration;

use async_graphql::{Enum, SimpleObject};
use serde::Deserialize;

use crate::limits::{MAX_OUTPUT, OUTPUT_TIMEOUT_SECS};
use crate::{error, Code};

/// Which of a task's output files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Enum)]
pub enum Stream {
    #[default]
    Stdout,
    Stderr,
}

impl Stream {
    pub fn file(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Part of a task's output.
#[derive(SimpleObject)]
pub struct Output {
    /// The text (invalid UTF-8 replaced).
    data: String,
    /// Where `data` starts in the file.
    offset: u64,
    /// Where to read on from to follow the file.
    end: u64,
    /// The file's size when it was read.
    size: u64,
}

/// Where to start reading.
pub enum From {
    /// The last this many bytes.
    Tail(u64),
    /// From this byte on.
    Offset(u64),
}

/// What the agent answers.
#[derive(Deserialize)]
struct Part {
    data: String,
    offset: u64,
}

/// The HTTP client the reads share.
pub struct Sandboxes(reqwest::Client);

impl Sandboxes {
    pub fn new() -> Self {
        Sandboxes(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(OUTPUT_TIMEOUT_SECS))
                .build()
                .unwrap_or_default(),
        )
    }

    /// Reads `file` (`task-id/stdout`) from the agent at `address`.
    pub async fn read(
        &self,
        address: &str,
        file: &str,
        from: From,
    ) -> async_graphql::Result<Output> {
        let size = self.part(address, file, -1, 0).await?.offset;
        let start = match from {
            From::Tail(bytes) => size.saturating_sub(bytes.min(MAX_OUTPUT as u64)),
            From::Offset(offset) => offset.min(size),
        };
        let part = self
            .part(address, file, start as i64, MAX_OUTPUT as u64)
            .await?;
        // Valid UTF-8 keeps its length; output cut inside a character or not text at all
        // may be read again in part, which a follower shows as replacement characters.
        let end = part.offset + part.data.len() as u64;
        Ok(Output {
            end,
            offset: part.offset,
            data: part.data,
            size,
        })
    }

    async fn part(
        &self,
        address: &str,
        file: &str,
        offset: i64,
        length: u64,
    ) -> async_graphql::Result<Part> {
        let unreachable = |e: reqwest::Error| {
            error(
                Code::Internal,
                format!("cannot read {file} from agent {address}: {e}"),
            )
        };
        let response = self
            .0
            .get(format!("http://{address}/files/read"))
            .query(&[
                ("path", file.to_owned()),
                ("offset", offset.to_string()),
                ("length", length.to_string()),
            ])
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            return Err(error(
                Code::NotFound,
                body["error"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{file} cannot be read")),
            ));
        }
        response.json().await.map_err(unreachable)
    }
}
