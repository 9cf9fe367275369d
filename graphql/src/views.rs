//! The states one request reads: the live one, taken once, and any `asOf` ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{Context, OneofObject};
use cairn_log::event::Timestamp;
use cairn_projections::live::{Error as LiveError, Projector, View};
use tokio::sync::{Mutex, OnceCell};

use crate::limits::MAX_AS_OF_STATES;
use crate::{error, Code};

/// A moment in the log: an offset, or a time (RFC 3339) meaning the last record at or before it.
#[derive(Debug, Clone, OneofObject)]
pub enum AsOf {
    Offset(u64),
    Time(String),
}

/// Per-request: the live view (taken at most once, so all fields agree) and as-of views by
/// offset.
#[derive(Default)]
pub struct Views {
    live: OnceCell<Arc<View>>,
    past: Mutex<BTreeMap<u64, Arc<View>>>,
}

impl Views {
    pub async fn get(ctx: &Context<'_>, as_of: Option<&AsOf>) -> async_graphql::Result<Arc<View>> {
        let projector = ctx.data_unchecked::<Projector>();
        let views = ctx.data_unchecked::<Views>();
        let Some(as_of) = as_of else {
            return Ok(views.live(projector).await);
        };
        // The live guard is not taken here: an as-of state may take a while to compute, and
        // the fold waits for every guard to be released.
        let offset = resolve(projector, as_of)?;
        let mut past = views.past.lock().await;
        if let Some(view) = past.get(&offset) {
            return Ok(view.clone());
        }
        if past.len() >= MAX_AS_OF_STATES {
            return Err(error(
                Code::Validation,
                format!(
                    "asOf: a request reads at most {MAX_AS_OF_STATES} moments of the past; \
                     offset {offset} would be one more"
                ),
            ));
        }
        let view = Arc::new(projector.as_of(offset).await.map_err(live_error)?);
        past.insert(offset, view.clone());
        Ok(view)
    }

    /// Whether `view` is this request's live state (not an `asOf` one).
    pub fn is_live(ctx: &Context<'_>, view: &Arc<View>) -> bool {
        ctx.data_unchecked::<Views>()
            .live
            .get()
            .is_some_and(|live| Arc::ptr_eq(live, view))
    }

    async fn live(&self, projector: &Projector) -> Arc<View> {
        self.live
            .get_or_init(|| async { Arc::new(projector.current().await) })
            .await
            .clone()
    }
}

/// The offset a moment names.
pub fn resolve(projector: &Projector, as_of: &AsOf) -> async_graphql::Result<u64> {
    match as_of {
        AsOf::Offset(offset) => Ok(*offset),
        AsOf::Time(time) => {
            let time = parse_time("asOf.time", time)?;
            projector.offset_at(time).map_err(live_error)
        }
    }
}

pub fn parse_time(field: &str, time: &str) -> async_graphql::Result<Timestamp> {
    Timestamp::parse_rfc3339(time).map_err(|e| {
        error(
            Code::Validation,
            format!("{field}: {time:?} is not an RFC 3339 time ({e})"),
        )
    })
}

pub fn live_error(e: LiveError) -> async_graphql::Error {
    match e {
        LiveError::Beyond { .. } => error(Code::NotFound, e.to_string()),
        e => error(Code::Internal, e.to_string()),
    }
}
