//! A record: one event as stored in the log, with its position, term, time and actor.

use std::fmt;
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use crate::event::{Actor, Event, Term, Timestamp};

/// A record's position in the log. Offsets are dense and start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Offset(NonZeroU64);

impl Offset {
    pub const FIRST: Offset = Offset(NonZeroU64::MIN);

    /// `None` for 0, which is no offset.
    pub const fn new(offset: u64) -> Option<Self> {
        match NonZeroU64::new(offset) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    pub const fn get(self) -> u64 {
        self.0.get()
    }

    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One event as stored: where (`offset`), under which leader (`term`), when (`at`, assigned by
/// the leader and never going back) and caused by whom (`actor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub offset: Offset,
    pub term: Term,
    pub at: Timestamp,
    pub actor: Actor,
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record is as big as the largest event variant, and records are moved on every
    /// decode and fold: a variant with a large payload holds it boxed
    /// (`docs/checklists/new-event.md`). Unboxed, a record was 872 bytes.
    #[test]
    fn records_stay_small() {
        let (event, record) = (size_of::<Event>(), size_of::<Record>());
        assert!(event <= 128, "an event is {event} bytes");
        assert!(record <= 256, "a record is {record} bytes");
    }
}
