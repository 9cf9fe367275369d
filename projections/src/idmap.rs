//! [`IdMap`]: an ordered map whose lookups by key skip the B-tree search.
//!
//! Most records look up their task, agent, app or run by id, and in a `BTreeMap` each lookup
//! walks the tree comparing the key with a dozen others: B-tree operations were ~46 % of the
//! fold's instructions (BENCHMARKS.md, tenth session). An `IdMap` keeps its entries in slots
//! found through a hash table (one hash, one or two key comparisons). Their order is needed
//! only to iterate, page and serialize, which a fold never does: it is kept as a sorted vector
//! of slots, settled at the first change after an ordered read; the entries that came since
//! are sorted and merged in by the next ordered read (a binary search each), and the slots
//! emptied since are dropped from it then. So a change costs no ordered insert (a `BTreeMap`
//! of keys to slots did: ~1,300 instructions, most of an insert, BENCHMARKS.md, eleventh
//! session), and a read after changes costs one pass over the order plus the sort of what
//! changed. Changes that pile up unread (a replay) settle themselves once they outnumber the
//! entries, so the cost stays amortized and emptied slots get reused.
//!
//! Determinism: the hash table is never iterated, and its hasher's seed decides only where an
//! entry sits in it, never what the map holds or the order it gives; a seed per map (not one
//! fixed in the source) keeps crafted ids from colliding on purpose. Everything observable —
//! iteration, serialization, equality — follows the keys' order, as a `BTreeMap`'s does, and a
//! map serializes exactly as a `BTreeMap` of the same entries (checkpoints and goldens are
//! unchanged).

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::ops::{Bound, Index, RangeBounds};
use std::sync::OnceLock;

use hashbrown::{DefaultHashBuilder, HashTable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Changes since the order was last settled beyond which a change settles it itself: a replay
/// reads no order, and its slots are not reused until the order is settled (see `emptied`).
/// Small in unit tests, so that short random histories cross it.
const UNSETTLED_MIN: usize = if cfg!(test) { 4 } else { 1024 };

/// An ordered map from ids to values with hashed lookups. See the module's documentation.
pub struct IdMap<K, V> {
    /// Entries by slot; `None` where one was removed.
    slots: Vec<Option<(K, V)>>,
    /// Emptied slots free to reuse.
    free: Vec<u32>,
    /// Slots emptied since the order was settled: not reused until it is again, so that
    /// `settled` never names a slot that holds another key by then.
    emptied: Vec<u32>,
    /// Slots of the entries, by the hash of their keys.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Slots in key order when the order was last settled (some may have been emptied since).
    settled: Vec<u32>,
    /// Slots filled since then, in no order.
    added: Vec<u32>,
    /// Every entry's slot in key order, merged from `settled`, `added` and `emptied` by the
    /// first ordered read after a change, and kept until the next change.
    order: OnceLock<Vec<u32>>,
    len: usize,
}

impl<K, V> Default for IdMap<K, V> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            emptied: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            settled: Vec::new(),
            added: Vec::new(),
            order: OnceLock::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Hash + Clone, V> IdMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot(&self, key: &K) -> Option<u32> {
        self.slot_hashed(self.hasher.hash_one(key), key)
    }

    fn slot_hashed(&self, hash: u64, key: &K) -> Option<u32> {
        self.index.find(hash, holds(&self.slots, key)).copied()
    }

    fn at(&self, slot: u32) -> &(K, V) {
        entry(&self.slots, slot)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.slot(key).map(|i| &self.at(i).1)
    }

    pub fn get_key_value(&self, key: &K) -> Option<(&K, &V)> {
        self.slot(key).map(|i| pair(self.at(i)))
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = self.slot(key)?;
        self.slots[i as usize].as_mut().map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.slot(key).is_some()
    }

    /// Inserts or replaces the value of `key`; the value it replaces, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = self.hasher.hash_one(&key);
        if let Some(i) = self.slot_hashed(hash, &key) {
            let (_, old) = self.slots[i as usize].as_mut().expect("indexed");
            return Some(std::mem::replace(old, value));
        }
        self.changing();
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 entries")
            }
        };
        self.slots[i as usize] = Some((key, value));
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(&entry(slots, j).0));
        self.added.push(i);
        self.len += 1;
        None
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        let found = self.index.find_entry(hash, holds(&self.slots, key)).ok()?;
        let (i, _) = found.remove();
        self.changing();
        self.emptied.push(i);
        self.len -= 1;
        self.slots[i as usize].take().map(|(_, v)| v)
    }

    /// Before an entry comes or goes: settles the order if a read merged it (it is then
    /// current) or if enough changes wait (merging them is then cheap per change).
    fn changing(&mut self) {
        let order = match self.order.take() {
            Some(order) => order,
            None if self.added.len() + self.emptied.len() >= self.len.max(UNSETTLED_MIN) => {
                self.merged()
            }
            None => return,
        };
        self.settled = order;
        self.added.clear();
        self.free.append(&mut self.emptied);
    }

    /// Every entry's slot in key order: the settled order less the emptied slots, with the
    /// added ones sorted and put in their places (a binary search each).
    fn merged(&self) -> Vec<u32> {
        let key = |i: &u32| &self.at(*i).0;
        let mut gone = vec![
            0u64;
            if self.emptied.is_empty() {
                0
            } else {
                self.slots.len().div_ceil(64)
            }
        ];
        for &i in &self.emptied {
            gone[i as usize / 64] |= 1 << (i % 64);
        }
        let kept = |i: &u32| gone.is_empty() || gone[*i as usize / 64] & (1 << (i % 64)) == 0;
        let settled: Vec<u32> = self.settled.iter().copied().filter(kept).collect();
        // An added slot emptied again holds nothing (emptied slots are not reused meanwhile).
        let mut added: Vec<u32> = self.added.iter().copied().filter(kept).collect();
        added.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        let mut order = Vec::with_capacity(self.len);
        let mut from = 0;
        for i in added {
            let to = from + settled[from..].partition_point(|j| key(j) < key(&i));
            order.extend_from_slice(&settled[from..to]);
            order.push(i);
            from = to;
        }
        order.extend_from_slice(&settled[from..]);
        order
    }

    fn order(&self) -> &[u32] {
        self.order.get_or_init(|| self.merged())
    }

    /// Entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            order: self.order().iter(),
            slots: &self.slots,
        }
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Entries whose keys are in `range`, in key order.
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> Iter<'_, K, V> {
        let order = self.order();
        let key = |i: &u32| &self.at(*i).0;
        let start = match range.start_bound() {
            Bound::Included(s) => order.partition_point(|i| key(i) < s),
            Bound::Excluded(s) => order.partition_point(|i| key(i) <= s),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => order.partition_point(|i| key(i) <= e),
            Bound::Excluded(e) => order.partition_point(|i| key(i) < e),
            Bound::Unbounded => order.len(),
        };
        Iter {
            order: order[start..end.max(start)].iter(),
            slots: &self.slots,
        }
    }
}

/// Whether a slot of the hash table holds `key`.
fn holds<'a, K: Eq, V>(slots: &'a [Option<(K, V)>], key: &'a K) -> impl Fn(&u32) -> bool + 'a {
    move |&i| slots[i as usize].as_ref().is_some_and(|(k, _)| k == key)
}

fn pair<K, V>((k, v): &(K, V)) -> (&K, &V) {
    (k, v)
}

fn entry<K, V>(slots: &[Option<(K, V)>], slot: u32) -> &(K, V) {
    slots[slot as usize]
        .as_ref()
        .expect("an indexed slot holds an entry")
}

/// Entries in key order: of the whole map, or of a range of keys.
#[derive(Debug)]
pub struct Iter<'a, K, V> {
    order: std::slice::Iter<'a, u32>,
    slots: &'a [Option<(K, V)>],
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let &i = self.order.next()?;
        Some(pair(entry(self.slots, i)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.order.size_hint()
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let &i = self.order.next_back()?;
        Some(pair(entry(self.slots, i)))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

impl<K: Ord + Hash + Clone, V> FromIterator<(K, V)> for IdMap<K, V> {
    /// Of equal keys, the last wins, as when inserting one by one. Entries in key order (a
    /// checkpoint's) are taken as they come, and the order is built from sorted keys at once
    /// (as `bulk` explains), not key by key.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut entries: Vec<(K, V)> = entries.into_iter().collect();
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable: equal keys stay in input order, so the last of each is kept.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries.reverse();
            entries.dedup_by(|later, earlier| later.0 == earlier.0);
            entries.reverse();
        }
        let mut map = Self::new();
        map.index.reserve(entries.len(), |_| 0);
        let slots = u32::try_from(entries.len()).expect("fewer than 2^32 entries");
        map.settled = (0..slots).collect();
        map.len = entries.len();
        let hasher = &map.hasher;
        for (i, (k, _)) in (0..).zip(&entries) {
            map.index.insert_unique(hasher.hash_one(k), i, |&j| {
                hasher.hash_one(&entries[j as usize].0)
            });
        }
        map.slots = entries.into_iter().map(Some).collect();
        map
    }
}

impl<K: Ord + Hash + Clone, V> Index<&K> for IdMap<K, V> {
    type Output = V;

    fn index(&self, key: &K) -> &V {
        self.get(key).expect("no entry for this key in the IdMap")
    }
}

impl<'a, K: Ord + Hash + Clone, V> IntoIterator for &'a IdMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K: Clone, V: Clone> Clone for IdMap<K, V> {
    fn clone(&self) -> Self {
        Self {
            slots: self.slots.clone(),
            free: self.free.clone(),
            emptied: self.emptied.clone(),
            index: self.index.clone(),
            hasher: self.hasher.clone(),
            settled: self.settled.clone(),
            added: self.added.clone(),
            order: self.order.clone(),
            len: self.len,
        }
    }
}

impl<K: Ord + Hash + Clone, V: PartialEq> PartialEq for IdMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Hash + Clone + Eq, V: Eq> Eq for IdMap<K, V> {}

impl<K: Ord + Hash + Clone + fmt::Debug, V: fmt::Debug> fmt::Debug for IdMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// As a map in key order: the shape of a `BTreeMap` of the same entries.
impl<K: Ord + Hash + Clone + Serialize, V: Serialize> Serialize for IdMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de, K, V> Deserialize<'de> for IdMap<K, V>
where
    K: Ord + Hash + Clone + Deserialize<'de>,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::bulk::entries(deserializer).map(Self::from_iter)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::IdMap;

    proptest! {
        /// Any sequence of inserts, removes and ordered reads between them leaves the same
        /// entries, in the same order and with the same serialized shape, as in a `BTreeMap`.
        #[test]
        fn behaves_as_a_btree_map(ops in prop::collection::vec((0u8..4, 0u8..40, any::<u16>()), 0..400)) {
            let mut map = IdMap::new();
            let mut model = BTreeMap::new();
            // Collected from entries out of order and repeated: the last of equal keys wins.
            let entries = ops.iter().map(|&(_, key, value)| (format!("task-{key}"), value));
            prop_assert!(entries.clone().collect::<IdMap<_, _>>().iter().eq(entries.collect::<BTreeMap<_, _>>().iter()));
            for (op, key, value) in ops {
                let key = format!("task-{key}");
                match op {
                    0 | 1 => prop_assert_eq!(map.insert(key.clone(), value), model.insert(key.clone(), value)),
                    2 => prop_assert_eq!(map.remove(&key), model.remove(&key)),
                    // An ordered read merges the changes so far; the next change settles them.
                    _ => {
                        prop_assert!(map.iter().eq(model.iter()));
                        prop_assert!(map.range(key.clone()..).rev().eq(model.range(key.clone()..).rev()));
                        prop_assert!(map.range(..=key.clone()).eq(model.range(..=key.clone())));
                        prop_assert_eq!(&map.clone(), &map);
                    }
                }
                prop_assert_eq!(map.get(&key), model.get(&key));
                prop_assert_eq!(map.len(), model.len());
            }
            prop_assert!(map.iter().eq(model.iter()));
            prop_assert!(map.range("task-2".to_owned()..).eq(model.range("task-2".to_owned()..)));
            let json = serde_json::to_string(&map).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&model).unwrap());
            let back: IdMap<String, u16> = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &map);
            prop_assert_eq!(&map.clone(), &map);
        }
    }
}
