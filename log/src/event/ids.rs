//! Identifiers and small value types shared by every event.
//!
//! String ids are minted by the imperative shell (API handlers, the scheduler runner, agents)
//! *before* an event is appended, and travel inside the event: a fold never invents an id.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest id accepted anywhere. Ids end up in URLs, sled keys and Docker labels; 256 bytes is
/// more than Marathon's longest path-like app ids in practice and keeps keys small.
pub const MAX_ID_LEN: usize = 256;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} bytes long, the limit is {MAX_ID_LEN}")]
    TooLong { kind: &'static str, len: usize },
    #[error("{kind} contains the control character {ch:?}")]
    ControlChar { kind: &'static str, ch: char },
}

/// Ids are compact strings: up to 24 bytes (most ids) sit inline, so that cloning one does not
/// allocate and comparing two, the folds' commonest step (every map of the state is keyed by
/// ids), reads no other memory. They serialize as plain strings, and order as strings do
/// (byte by byte), compared by [`cmp_id`].
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(CompactString);

        impl Ord for $name {
            #[inline]
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                cmp_id(self.0.as_bytes(), other.0.as_bytes())
            }
        }

        impl PartialOrd for $name {
            #[inline]
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl $name {
            /// Checks the id's shape (non-empty, bounded, printable) and wraps it.
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                check_id($kind, &id)?;
                Ok(Self(CompactString::from(id)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// Byte-wise order, eight bytes at a time: the same order as `[u8]`'s, without a call to
/// `memcmp` per comparison. Ids are short, and comparing them was a quarter of the fold's time
/// (BENCHMARKS.md, "Records are small").
#[inline]
fn cmp_id(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let common = a.len().min(b.len());
    let (mut a_words, mut b_words) = (a[..common].chunks_exact(8), b[..common].chunks_exact(8));
    for (x, y) in (&mut a_words).zip(&mut b_words) {
        let x = u64::from_be_bytes(x.try_into().expect("eight bytes"));
        let y = u64::from_be_bytes(y.try_into().expect("eight bytes"));
        if x != y {
            return x.cmp(&y);
        }
    }
    // The last common bytes, fewer than eight: one at a time (`[u8]`'s order calls `memcmp`).
    for (x, y) in a_words.remainder().iter().zip(b_words.remainder()) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

fn check_id(kind: &'static str, id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: id.len(),
        });
    }
    if let Some(ch) = id.chars().find(|c| c.is_control()) {
        return Err(IdError::ControlChar { kind, ch });
    }
    Ok(())
}

string_id!(
    /// An agent (a machine offering resources), stable across agent restarts.
    AgentId, "agent id"
);
string_id!(
    /// A task: one process or container launched on one agent.
    TaskId, "task id"
);
string_id!(
    /// A framework: a scheduler that receives offers (built-in apps/jobs, or external).
    FrameworkId, "framework id"
);
string_id!(
    /// A resource offer.
    OfferId, "offer id"
);
string_id!(
    /// A Marathon-style app, path-like (`/prod/web`).
    AppId, "app id"
);
string_id!(
    /// A deployment of one or more apps.
    DeploymentId, "deployment id"
);
string_id!(
    /// A Chronos-style job's name.
    JobName, "job name"
);
string_id!(
    /// One run of a job (all its attempts share it).
    RunId, "run id"
);

/// A master, a member of the replicated log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A leadership term. Every record carries the term of the leader that appended it, so a
/// component can refuse commands from a deposed leader (fencing).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Term(pub u64);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A moment in UTC with microsecond precision, as assigned by the leader. Folds read time only
/// from here; it is encoded in JSON as RFC 3339 (`2026-11-26T13:29:21.000123Z`), and in binary
/// formats (MessagePack checkpoints) as microseconds since the epoch: an integer, not text to
/// format and parse.
/// The default is the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.0).single().unwrap_or_default()
    }

    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self(at.timestamp_micros())
    }

    /// Parses RFC 3339 (any offset; kept as UTC).
    pub fn parse_rfc3339(s: &str) -> Result<Self, chrono::ParseError> {
        if let Some(t) = Self::parse_canonical(s.as_bytes()) {
            return Ok(t);
        }
        Ok(Self::from_datetime(
            DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc),
        ))
    }

    /// The canonical form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, which is every timestamp cairn
    /// writes: parsed without chrono, because states and records hold many of them (chrono's
    /// general parser was a large share of loading a checkpoint). Anything else is `None`
    /// and goes to chrono.
    fn parse_canonical(b: &[u8]) -> Option<Self> {
        if b.len() != 27
            || (b[4], b[7], b[10], b[13], b[16], b[19], b[26])
                != (b'-', b'-', b'T', b':', b':', b'.', b'Z')
        {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            b[range].iter().try_fold(0i64, |n, d| {
                d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
            })
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let micros = num(20..26)?;
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
        Some(Self(secs * 1_000_000 + micros))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01: the inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        if !(0..=9999).contains(&year) {
            // Outside four-digit years, chrono's own spelling.
            let at = self.to_datetime();
            return f.write_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true));
        }
        // The canonical form, written without chrono (see `parse_canonical`).
        let of_day = secs.rem_euclid(86_400);
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut n: i64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, of_day / 3_600);
        put(14, 2, of_day % 3_600 / 60);
        put(17, 2, of_day % 60);
        put(20, 6, micros);
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than `Cow<str>`, which serde always makes owned: no allocation per
        // timestamp.
        struct Rfc3339;
        impl serde::de::Visitor<'_> for Rfc3339 {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(s).map_err(E::custom)
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(Rfc3339)
        } else {
            i64::deserialize(d).map(Timestamp)
        }
    }
}

/// A range of ports, both ends included (Mesos' `[31000-32000]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub begin: u16,
    pub end: u16,
}

/// Schedulable resources, in integral units so that sums are exact and deterministic:
/// 0.2 CPUs is `cpus_milli: 200`, Marathon's `mem: 32.0` is `mem_mib: 32`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    pub cpus_milli: u64,
    pub mem_mib: u64,
    #[serde(default)]
    pub disk_mib: u64,
    #[serde(default)]
    pub ports: Vec<PortRange>,
}

impl Resources {
    /// The sum, or `None` on overflow.
    pub fn checked_add(&self, other: &Resources) -> Option<Resources> {
        Some(Resources {
            cpus_milli: self.cpus_milli.checked_add(other.cpus_milli)?,
            mem_mib: self.mem_mib.checked_add(other.mem_mib)?,
            disk_mib: self.disk_mib.checked_add(other.disk_mib)?,
            ports: port_union(&self.ports, &other.ports),
        })
    }

    /// Adds `other` to `self` in place; `false`, and `self` unchanged, on overflow. As
    /// [`Resources::checked_add`] for sums it made (their ports normalized), without
    /// allocating when `other` has no ports: the folds' commonest step.
    pub fn try_add(&mut self, other: &Resources) -> bool {
        self.try_step(other, u64::checked_add, |a, b| Some(port_union(a, b)))
    }

    /// Takes `other` from `self` in place; `false`, and `self` unchanged, unless `other` is
    /// contained in `self`. As [`Resources::checked_sub`] for normalized sums.
    pub fn try_sub(&mut self, other: &Resources) -> bool {
        self.try_step(other, u64::checked_sub, port_difference)
    }

    fn try_step(
        &mut self,
        other: &Resources,
        scalar: fn(u64, u64) -> Option<u64>,
        ports: fn(&[PortRange], &[PortRange]) -> Option<Vec<PortRange>>,
    ) -> bool {
        let (Some(cpus), Some(mem), Some(disk)) = (
            scalar(self.cpus_milli, other.cpus_milli),
            scalar(self.mem_mib, other.mem_mib),
            scalar(self.disk_mib, other.disk_mib),
        ) else {
            return false;
        };
        if !other.ports.is_empty() {
            let Some(next) = ports(&self.ports, &other.ports) else {
                return false;
            };
            self.ports = next;
        }
        (self.cpus_milli, self.mem_mib, self.disk_mib) = (cpus, mem, disk);
        true
    }

    /// `self - other`, or `None` unless `other` is contained in `self` (ports included).
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        Some(Resources {
            cpus_milli: self.cpus_milli.checked_sub(other.cpus_milli)?,
            mem_mib: self.mem_mib.checked_sub(other.mem_mib)?,
            disk_mib: self.disk_mib.checked_sub(other.disk_mib)?,
            ports: port_difference(&self.ports, &other.ports)?,
        })
    }

    /// Mesos' v0 JSON resources object (`{"cpus", "mem", "disk", "gpus", "ports": "[a-b, …]"}`),
    /// as the master's and the agent's `state.json` write them.
    pub fn mesos_v0_json(&self) -> serde_json::Value {
        let ports: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("{}-{}", p.begin, p.end))
            .collect();
        let mut out = serde_json::json!({
            "cpus": self.cpus_milli as f64 / 1000.0,
            "mem": self.mem_mib as f64,
            "disk": self.disk_mib as f64,
            "gpus": 0.0,
        });
        if !ports.is_empty() {
            out["ports"] = serde_json::json!(format!("[{}]", ports.join(", ")));
        }
        out
    }

    /// Mesos' v1 JSON resource list (`cpus`, `mem`, `disk` scalars, `ports` ranges), the shape
    /// the scheduler, operator and executor APIs all speak.
    pub fn mesos_json(&self) -> serde_json::Value {
        use serde_json::json;
        let scalar = |name: &str, v: f64| json!({ "name": name, "type": "SCALAR", "scalar": { "value": v }, "role": "*" });
        let mut out = vec![
            scalar("cpus", self.cpus_milli as f64 / 1000.0),
            scalar("mem", self.mem_mib as f64),
        ];
        if self.disk_mib > 0 {
            out.push(scalar("disk", self.disk_mib as f64));
        }
        if !self.ports.is_empty() {
            out.push(json!({ "name": "ports", "type": "RANGES", "role": "*", "ranges": {
                "range": self.ports.iter().map(|p| json!({ "begin": p.begin, "end": p.end })).collect::<Vec<_>>(),
            }}));
        }
        json!(out)
    }
}

/// Sorted, merged ranges covering the same ports as `ranges`.
fn normalize(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort();
    let mut out: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for r in ranges.into_iter().filter(|r| r.begin <= r.end) {
        match out.last_mut() {
            Some(last) if u32::from(r.begin) <= u32::from(last.end) + 1 => {
                last.end = last.end.max(r.end)
            }
            _ => out.push(r),
        }
    }
    out
}

fn port_union(a: &[PortRange], b: &[PortRange]) -> Vec<PortRange> {
    normalize(a.iter().chain(b).copied().collect())
}

/// `a - b` as ranges, or `None` if some port of `b` is not in `a`.
fn port_difference(a: &[PortRange], b: &[PortRange]) -> Option<Vec<PortRange>> {
    let mut out = normalize(a.to_vec());
    for cut in normalize(b.to_vec()) {
        let i = out
            .iter()
            .position(|r| r.begin <= cut.begin && cut.end <= r.end)?;
        let r = out.remove(i);
        if cut.end < r.end {
            out.insert(
                i,
                PortRange {
                    begin: cut.end + 1,
                    end: r.end,
                },
            );
        }
        if r.begin < cut.begin {
            out.insert(
                i,
                PortRange {
                    begin: r.begin,
                    end: cut.begin - 1,
                },
            );
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_as_their_strings_do() {
        let ids = [
            "a",
            "ab",
            "abc",
            "task-1",
            "task-10",
            "task-2",
            "task-12345678",
            "task-12345679",
            "task-1234567",
            "task-000000001",
            "task-000000010",
            "task-00000002",
            "abcdefg",
            "abcdefgh",
            "abcdefgh1",
            "abcdefgh2",
            "abcdefghi",
            "abcdefghij",
            "app.0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "app.0f1e2d3c-4b5a-6978",
            "\u{e9}t\u{e9}",
            "z",
            "zz",
            "zzzzzzzzzzzzzzzzzzzzzzzzz",
            "zzzzzzzzzzzzzzzzzzzzzzzz",
        ];
        for a in ids {
            for b in ids {
                let (x, y) = (TaskId::new(a).unwrap(), TaskId::new(b).unwrap());
                assert_eq!(x.cmp(&y), a.cmp(b), "{a} vs {b}");
                assert_eq!(x.partial_cmp(&y), Some(a.cmp(b)), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn timestamps_read_and_write_their_canonical_form_as_chrono_does() {
        let chrono_spelling =
            |t: Timestamp| t.to_datetime().to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut micros: i64 = -62_135_596_800_000_000; // 0001-01-01
        while micros < 253_402_300_799_999_999 {
            // 9999-12-31T23:59:59.999999
            let t = Timestamp::from_micros(micros);
            let text = t.to_string();
            assert_eq!(text, chrono_spelling(t));
            assert_eq!(Timestamp::parse_rfc3339(&text).unwrap(), t, "{text}");
            micros += 863_999_999_937; // about ten days, never landing on the same time of day
        }
        for text in [
            "2024-02-29T23:59:59.999999Z",
            "2000-02-29T00:00:00.000000Z",
            "1969-12-31T23:59:59.999999Z",
        ] {
            let t = Timestamp::parse_rfc3339(text).unwrap();
            assert_eq!(t.to_string(), text);
            assert_eq!(
                Some(t),
                Some(Timestamp::from_datetime(
                    DateTime::parse_from_rfc3339(text)
                        .unwrap()
                        .with_timezone(&Utc)
                ))
            );
        }
        // Not canonical: chrono decides, as before.
        for bad in [
            "2023-02-29T00:00:00.000000Z",
            "2024-13-01T00:00:00.000000Z",
            "2024-01-01T24:00:00.000000Z",
        ] {
            assert!(
                Timestamp::parse_canonical(bad.as_bytes()).is_none(),
                "{bad}"
            );
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
        assert!(Timestamp::parse_canonical(b"2024-01-01 00:00:00.000000Z").is_none());
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-26T14:29:21+01:00")
                .unwrap()
                .to_string(),
            "2026-11-26T13:29:21.000000Z"
        );
    }

    fn ports(ranges: &[(u16, u16)]) -> Resources {
        Resources {
            ports: ranges
                .iter()
                .map(|&(begin, end)| PortRange { begin, end })
                .collect(),
            ..Resources::default()
        }
    }

    #[test]
    fn resources_add_and_subtract_exactly() {
        let total = Resources {
            cpus_milli: 2000,
            mem_mib: 1024,
            disk_mib: 10,
            ports: ports(&[(31000, 31010)]).ports,
        };
        let task = Resources {
            cpus_milli: 200,
            mem_mib: 32,
            disk_mib: 0,
            ports: ports(&[(31003, 31003)]).ports,
        };
        let left = total.checked_sub(&task).unwrap();
        assert_eq!(left.cpus_milli, 1800);
        assert_eq!(left.ports, ports(&[(31000, 31002), (31004, 31010)]).ports);
        assert_eq!(left.checked_add(&task).unwrap(), total);
        assert_eq!(task.checked_sub(&total), None, "more than there is");
        assert_eq!(
            ports(&[(1, 5)]).checked_sub(&ports(&[(4, 7)])),
            None,
            "ports not all held"
        );
        assert_eq!(
            ports(&[(1, 2), (3, 4), (9, 9)])
                .checked_add(&ports(&[]))
                .unwrap()
                .ports,
            ports(&[(1, 4), (9, 9)]).ports
        );
    }

    /// In place, as the copying forms: same sums, same refusals, nothing changed on a refusal.
    #[test]
    fn resources_change_in_place_as_they_add_and_subtract() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut draw = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut sum = Resources::default();
        let mut taken: Vec<Resources> = Vec::new();
        for _ in 0..5_000 {
            let delta = if draw(3) > 0 || taken.is_empty() {
                let port = 31000 + draw(200) as u16;
                Resources {
                    cpus_milli: draw(500),
                    mem_mib: if draw(50) == 0 { u64::MAX } else { draw(64) },
                    disk_mib: draw(4),
                    ports: if draw(2) == 0 {
                        Vec::new()
                    } else {
                        ports(&[(port, port + draw(3) as u16)]).ports
                    },
                }
            } else {
                taken.swap_remove(draw(taken.len() as u64) as usize)
            };
            let add = draw(3) > 0;
            let expected = if add {
                sum.checked_add(&delta)
            } else {
                sum.checked_sub(&delta)
            };
            let before = sum.clone();
            let changed = if add {
                sum.try_add(&delta)
            } else {
                sum.try_sub(&delta)
            };
            assert_eq!(changed, expected.is_some(), "{before:?} {add} {delta:?}");
            assert_eq!(sum, expected.unwrap_or(before));
            if changed && add {
                taken.push(delta);
            }
        }
    }

    #[test]
    fn ids_are_checked() {
        assert_eq!(AgentId::new(""), Err(IdError::Empty { kind: "agent id" }));
        assert!(matches!(
            TaskId::new("a\nb"),
            Err(IdError::ControlChar { ch: '\n', .. })
        ));
        assert!(matches!(
            AppId::new("x".repeat(257)),
            Err(IdError::TooLong { len: 257, .. })
        ));
        assert_eq!(AppId::new("/prod/web").unwrap().as_str(), "/prod/web");
    }

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        let t = Timestamp::from_micros(1_764_163_761_000_123);
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, "\"2025-11-26T13:29:21.000123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&s).unwrap(), t);
        let offset = Timestamp::parse_rfc3339("2025-11-26T14:29:21.000123+01:00").unwrap();
        assert_eq!(offset, t);
    }
}
