//! [`IdMap`]: an ordered map whose lookups by key skip the B-tree search.
//!
//! Most records look up their task, agent, app or run by id, and in a `BTreeMap` each lookup
//! walks the tree comparing the key with a dozen others: B-tree operations were ~46 % of the
//! fold's instructions (BENCHMARKS.md, tenth session). An `IdMap` keeps its entries in slots
//! found through a hash table (one hash, one or two key comparisons) and their order in a
//! `BTreeMap` of keys to slots, used only to iterate, page and serialize, and changed only when
//! an entry comes or goes.
//!
//! Determinism: the hash table is never iterated, and its hasher's seed decides only where an
//! entry sits in it, never what the map holds or the order it gives; a seed per map (not one
//! fixed in the source) keeps crafted ids from colliding on purpose. Everything observable —
//! iteration, serialization, equality — follows the keys' order, as a `BTreeMap`'s does, and a
//! map serializes exactly as a `BTreeMap` of the same entries (checkpoints and goldens are
//! unchanged).

use std::collections::{btree_map, BTreeMap};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::ops::{Index, RangeBounds};

use hashbrown::{DefaultHashBuilder, HashTable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ordered map from ids to values with hashed lookups. See the module's documentation.
pub struct IdMap<K, V> {
    /// Every key, in order, with the slot of its entry.
    order: BTreeMap<K, u32>,
    /// Entries by slot; `None` where one was removed (its slot is in `free`).
    slots: Vec<Option<(K, V)>>,
    free: Vec<u32>,
    /// Slots of the entries, by the hash of their keys.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl<K, V> Default for IdMap<K, V> {
    fn default() -> Self {
        Self {
            order: BTreeMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

impl<K: Ord + Hash + Clone, V> IdMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
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
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 entries")
            }
        };
        self.order.insert(key.clone(), i);
        self.slots[i as usize] = Some((key, value));
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(&entry(slots, j).0));
        None
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        let found = self.index.find_entry(hash, holds(&self.slots, key)).ok()?;
        let (i, _) = found.remove();
        self.order.remove(key);
        self.free.push(i);
        self.slots[i as usize].take().map(|(_, v)| v)
    }

    /// Entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V, btree_map::Iter<'_, K, u32>> {
        Iter {
            order: self.order.iter(),
            slots: &self.slots,
        }
    }

    pub fn keys(&self) -> btree_map::Keys<'_, K, u32> {
        self.order.keys()
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Entries whose keys are in `range`, in key order.
    pub fn range<R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> Iter<'_, K, V, btree_map::Range<'_, K, u32>> {
        Iter {
            order: self.order.range(range),
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
pub struct Iter<'a, K, V, O> {
    order: O,
    slots: &'a [Option<(K, V)>],
}

impl<'a, K: 'a, V, O: Iterator<Item = (&'a K, &'a u32)>> Iterator for Iter<'a, K, V, O> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let (_, &i) = self.order.next()?;
        Some(pair(entry(self.slots, i)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.order.size_hint()
    }
}

impl<'a, K: 'a, V, O: DoubleEndedIterator<Item = (&'a K, &'a u32)>> DoubleEndedIterator
    for Iter<'a, K, V, O>
{
    fn next_back(&mut self) -> Option<Self::Item> {
        let (_, &i) = self.order.next_back()?;
        Some(pair(entry(self.slots, i)))
    }
}

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
        map.order = entries.iter().map(|(k, _)| k.clone()).zip(0..).collect();
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
    type IntoIter = Iter<'a, K, V, btree_map::Iter<'a, K, u32>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K: Clone, V: Clone> Clone for IdMap<K, V> {
    fn clone(&self) -> Self {
        Self {
            order: self.order.clone(),
            slots: self.slots.clone(),
            free: self.free.clone(),
            index: self.index.clone(),
            hasher: self.hasher.clone(),
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
        /// Any sequence of inserts and removes leaves the same entries, in the same order and
        /// with the same serialized shape, as in a `BTreeMap`.
        #[test]
        fn behaves_as_a_btree_map(ops in prop::collection::vec((any::<bool>(), 0u8..40, any::<u16>()), 0..400)) {
            let mut map = IdMap::new();
            let mut model = BTreeMap::new();
            // Collected from entries out of order and repeated: the last of equal keys wins.
            let entries = ops.iter().map(|&(_, key, value)| (format!("task-{key}"), value));
            prop_assert!(entries.clone().collect::<IdMap<_, _>>().iter().eq(entries.collect::<BTreeMap<_, _>>().iter()));
            for (insert, key, value) in ops {
                let key = format!("task-{key}");
                if insert {
                    prop_assert_eq!(map.insert(key.clone(), value), model.insert(key.clone(), value));
                } else {
                    prop_assert_eq!(map.remove(&key), model.remove(&key));
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
