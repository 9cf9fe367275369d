//! The raw event log: a Relay connection over offsets with filters, and a subscription that
//! follows it live from any offset.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{
    Context, InputObject, Json, Object, SimpleObject, Subscription as SubscriptionRoot,
};
use cairn_log::engine::Log;
use cairn_log::event::{Actor, EventKind};
use cairn_log::{Offset, Record};
use cairn_projections::live::Projector;
use futures_util::Stream;

use crate::limits::{page_size, MAX_SCAN, MAX_TIMELINE_POINTS};
use crate::model::{self, ActorInfo};
use crate::views::{parse_time, resolve, AsOf};
use crate::{error, Code};

/// Records read from the log per step of a scan.
const SCAN_CHUNK: usize = 1024;

/// Which records to return; every given condition must hold.
#[derive(Debug, Clone, Default, InputObject)]
pub struct EventFilter {
    /// Event types, e.g. `["AppCreated", "TaskStatusUpdated"]`.
    pub types: Option<Vec<String>>,
    /// Records that name this app (by `app_id`).
    pub app: Option<String>,
    /// Records that name this job (as the job or a parent).
    pub job: Option<String>,
    /// Records that name this task.
    pub task: Option<String>,
    /// Records that name this agent.
    pub agent: Option<String>,
    /// Records caused by this principal: `user:alice`, or just `alice`.
    pub actor: Option<String>,
    /// Records appended at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Records appended at or before this time (RFC 3339).
    pub until: Option<String>,
}

/// A checked filter.
struct Matcher {
    types: Option<Vec<EventKind>>,
    mentions: Vec<(&'static [&'static str], String)>,
    actor: Option<String>,
}

impl Matcher {
    fn new(filter: &EventFilter) -> async_graphql::Result<Self> {
        let types = match &filter.types {
            Some(types) => Some(
                types
                    .iter()
                    .map(|t| {
                        t.parse::<EventKind>().map_err(|_| {
                            error(
                                Code::Validation,
                                format!("filter.types: {t:?} is not an event type"),
                            )
                        })
                    })
                    .collect::<async_graphql::Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let mut mentions = Vec::new();
        let keys: [(&'static [&'static str], &Option<String>); 4] = [
            (&["app_id", "app_ids"], &filter.app),
            (&["job", "parents"], &filter.job),
            (&["task_id"], &filter.task),
            (&["agent_id"], &filter.agent),
        ];
        for (keys, wanted) in keys {
            if let Some(wanted) = wanted {
                mentions.push((keys, wanted.clone()));
            }
        }
        Ok(Matcher {
            types,
            mentions,
            actor: filter.actor.clone(),
        })
    }

    fn matches(&self, record: &Record) -> bool {
        if let Some(types) = &self.types {
            if !types.contains(&record.event.kind()) {
                return false;
            }
        }
        if let Some(actor) = &self.actor {
            if !actor_matches(&record.actor, actor) {
                return false;
            }
        }
        if self.mentions.is_empty() {
            return true;
        }
        let Ok(payload) = serde_json::to_value(&record.event) else {
            return false;
        };
        self.mentions
            .iter()
            .all(|(keys, wanted)| mentions(&payload, keys, wanted))
    }
}

/// Whether `value` holds, at any depth, one of `keys` equal to `wanted` (or a list holding it).
fn mentions(value: &serde_json::Value, keys: &[&str], wanted: &str) -> bool {
    use serde_json::Value;
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| {
            let here = keys.contains(&k.as_str())
                && match v {
                    Value::String(s) => s == wanted,
                    Value::Array(items) => items.iter().any(|i| i.as_str() == Some(wanted)),
                    _ => false,
                };
            here || mentions(v, keys, wanted)
        }),
        Value::Array(items) => items.iter().any(|v| mentions(v, keys, wanted)),
        _ => false,
    }
}

/// `user:alice` matches exactly; `alice` matches the name of any kind of principal.
pub fn actor_matches(actor: &Actor, wanted: &str) -> bool {
    let principal = model::principal(&actor.principal);
    principal == wanted
        || principal
            .split_once(':')
            .is_some_and(|(_, name)| name == wanted)
}

/// One record of the log.
pub struct EventNode(Arc<Record>);

#[Object(name = "Event")]
impl EventNode {
    async fn offset(&self) -> u64 {
        self.0.offset.get()
    }
    /// The leader's term when it was appended.
    async fn term(&self) -> u64 {
        self.0.term.0
    }
    async fn at(&self) -> String {
        model::time(self.0.at)
    }
    /// The event type, e.g. `TaskStatusUpdated`.
    async fn r#type(&self) -> &'static str {
        self.0.event.kind().into()
    }
    async fn actor(&self) -> ActorInfo {
        (&self.0.actor).into()
    }
    /// The event's fields, as stored (without the type, which is `type`).
    async fn payload(&self) -> Json<serde_json::Value> {
        match model::json(&self.0.event).0 {
            serde_json::Value::Object(mut tagged) if tagged.len() == 1 => Json(
                tagged
                    .values_mut()
                    .next()
                    .map(std::mem::take)
                    .unwrap_or_default(),
            ),
            other => Json(other),
        }
    }
}

#[derive(SimpleObject)]
pub struct EventPage {
    /// The last offset this page examined: a filtered page may stop scanning before it is
    /// full; ask again after this offset.
    scanned_to: u64,
    /// The log's head when the page was read.
    head: u64,
}

/// One page of the log.
pub async fn page(
    ctx: &Context<'_>,
    filter: EventFilter,
    as_of: Option<AsOf>,
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> async_graphql::Result<Connection<String, EventNode, EventPage>> {
    let log = ctx.data_unchecked::<Log>();
    let projector = ctx.data_unchecked::<Projector>();
    let matcher = Matcher::new(&filter)?;
    let cursor = |name: &str, c: &Option<String>| -> async_graphql::Result<Option<u64>> {
        c.as_deref()
            .map(|c| {
                c.parse::<u64>().map_err(|_| {
                    error(
                        Code::Validation,
                        format!("{name}: {c:?} is not an event cursor (an offset)"),
                    )
                })
            })
            .transpose()
    };
    let (after, before) = (cursor("after", &after)?, cursor("before", &before)?);
    if first.is_some() && last.is_some() {
        return Err(error(Code::Validation, "first, last: give at most one"));
    }
    let head = log.head();
    // The window of offsets the filters allow: [low, high].
    let mut high = head;
    if let Some(as_of) = &as_of {
        high = high.min(resolve(projector, as_of)?);
    }
    if let Some(until) = &filter.until {
        let until = parse_time("filter.until", until)?;
        high = high.min(
            projector
                .offset_at(until)
                .map_err(crate::views::live_error)?,
        );
    }
    let mut low = 1;
    if let Some(since) = &filter.since {
        let since = parse_time("filter.since", since)?;
        let before_since = cairn_log::event::Timestamp::from_micros(since.as_micros() - 1);
        low = low.max(
            projector
                .offset_at(before_since)
                .map_err(crate::views::live_error)?
                + 1,
        );
    }
    if let Some(before) = before {
        high = high.min(before.saturating_sub(1));
    }
    if let Some(after) = after {
        low = low.max(after + 1);
    }

    let backwards = last.is_some();
    let want = page_size(if backwards { last } else { first })?;
    let log = log.clone();
    let (found, scanned_to, more) =
        tokio::task::spawn_blocking(move || scan(&log, &matcher, low, high, want, backwards))
            .await
            .map_err(|e| error(Code::Internal, e.to_string()))?
            .map_err(|e| error(Code::Internal, e.to_string()))?;

    let (has_previous, has_next) = if backwards {
        (more, before.is_some_and(|b| b <= head))
    } else {
        (after.is_some(), more)
    };
    let mut connection =
        Connection::with_additional_fields(has_previous, has_next, EventPage { scanned_to, head });
    connection.edges.extend(
        found
            .into_iter()
            .map(|r| Edge::new(r.offset.get().to_string(), EventNode(Arc::new(r)))),
    );
    Ok(connection)
}

/// Up to `want` matching records in `[low, high]`, oldest first, scanning forwards from `low`
/// or backwards from `high`, at most [`MAX_SCAN`] records. Returns them, the last offset
/// examined, and whether matches may remain beyond it.
fn scan(
    log: &Log,
    matcher: &Matcher,
    low: u64,
    high: u64,
    want: usize,
    backwards: bool,
) -> cairn_log::Result<(Vec<Record>, u64, bool)> {
    let mut found = Vec::new();
    let mut scanned = 0;
    if low > high || want == 0 {
        return Ok((
            found,
            if backwards {
                high
            } else {
                low.saturating_sub(1)
            },
            low <= high,
        ));
    }
    if backwards {
        let mut top = high;
        while top >= low && found.len() < want && scanned < MAX_SCAN {
            let from = top.saturating_sub(SCAN_CHUNK as u64 - 1).max(low);
            let chunk = read(log, from, top - from + 1)?;
            scanned += chunk.len();
            for record in chunk.into_iter().rev() {
                top = record.offset.get() - 1;
                if matcher.matches(&record) {
                    found.push(record);
                    if found.len() == want {
                        break;
                    }
                }
            }
        }
        found.reverse();
        Ok((found, top + 1, top >= low))
    } else {
        let mut next = low;
        while next <= high && found.len() < want && scanned < MAX_SCAN {
            let count = (high - next + 1).min(SCAN_CHUNK as u64);
            let chunk = read(log, next, count)?;
            scanned += chunk.len();
            for record in chunk {
                next = record.offset.get() + 1;
                if matcher.matches(&record) {
                    found.push(record);
                    if found.len() == want {
                        break;
                    }
                }
            }
        }
        Ok((found, next - 1, next <= high))
    }
}

fn read(log: &Log, from: u64, count: u64) -> cairn_log::Result<Vec<Record>> {
    let from = Offset::new(from).unwrap_or(Offset::FIRST);
    let records = log.read(from, usize::try_from(count).unwrap_or(SCAN_CHUNK))?;
    if records.is_empty() {
        return Err(cairn_log::Error::Corrupt {
            offset: from.get(),
            detail: "an applied record could not be read".into(),
        });
    }
    Ok(records)
}

#[derive(Debug)]
pub struct Subscription;

#[SubscriptionRoot]
impl Subscription {
    /// Every record from offset `from` (default: the next one appended) as it commits, with
    /// no gap and no duplicate. To resume after a disconnect, subscribe again from the last
    /// offset received plus one.
    async fn events(
        &self,
        ctx: &Context<'_>,
        from: Option<u64>,
        filter: Option<EventFilter>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<EventNode>>> {
        let log = ctx.data_unchecked::<Log>().clone();
        let matcher = Matcher::new(&filter.unwrap_or_default())?;
        let from = match from {
            Some(0) => Offset::FIRST,
            Some(from) => Offset::new(from).unwrap_or(Offset::FIRST),
            None => Offset::new(log.head() + 1).unwrap_or(Offset::FIRST),
        };
        let follow = log
            .follow(from)
            .map_err(|e| error(Code::Conflict, e.to_string()))?;
        Ok(futures_util::stream::unfold(
            (follow, matcher),
            |(mut follow, matcher)| async move {
                loop {
                    match follow.next().await? {
                        Ok(record) if matcher.matches(&record) => {
                            return Some((Ok(EventNode(Arc::new(record))), (follow, matcher)));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let e = error(Code::Internal, e.to_string());
                            return Some((Err(e), (follow, matcher)));
                        }
                    }
                }
            },
        ))
    }
}

/// One sampled point of the log.
#[derive(SimpleObject)]
pub struct TimePoint {
    offset: u64,
    at: String,
}

/// `points` records spread evenly over the log's offsets, the first and the head included:
/// the offset ↔ time mapping a timeline draws, and the density of events between them.
pub async fn timeline(ctx: &Context<'_>, points: i32) -> async_graphql::Result<Vec<TimePoint>> {
    let points = usize::try_from(points)
        .ok()
        .filter(|p| (2..=MAX_TIMELINE_POINTS).contains(p))
        .ok_or_else(|| {
            error(
                Code::Validation,
                format!("points: {points} is not between 2 and {MAX_TIMELINE_POINTS}"),
            )
        })?;
    let log = ctx.data_unchecked::<Log>().clone();
    let head = log.head();
    tokio::task::spawn_blocking(move || {
        let span = head.saturating_sub(1);
        let mut offsets: Vec<Offset> = (0..points as u64)
            .map(|i| 1 + span * i / (points as u64 - 1))
            .filter(|&o| o <= head)
            .filter_map(Offset::new)
            .collect();
        offsets.dedup();
        let mut found = Vec::with_capacity(offsets.len());
        for offset in offsets {
            if let Some(record) = log.read(offset, 1)?.into_iter().next() {
                found.push(TimePoint {
                    offset: record.offset.get(),
                    at: model::time(record.at),
                });
            }
        }
        Ok::<_, cairn_log::Error>(found)
    })
    .await
    .map_err(|e| error(Code::Internal, e.to_string()))?
    .map_err(|e| error(Code::Internal, e.to_string()))
}
