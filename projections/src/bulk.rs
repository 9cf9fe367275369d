//! Deserializing the state's big ordered maps and sets in bulk.
//!
//! serde builds a `BTreeMap` by inserting each entry, a search from the root every time: a
//! tenth of loading the jobs of a 10M-event state went to those searches and inserts
//! (BENCHMARKS.md). The state's maps are written in key order, and `from_iter` of sorted
//! entries builds the tree bottom-up with one comparison per entry (it sorts first, which for
//! sorted input is a single pass), its nodes full. Entries out of order still load (they are
//! sorted), and of equal keys the last wins, as with inserting them one by one.
//!
//! For `#[serde(deserialize_with = ...)]` on the maps and sets that grow with the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// Entries preallocated at most, whatever length the input claims.
const MAX_PREALLOCATED: usize = 1 << 16;

/// A `BTreeMap`, built from its entries at once.
pub fn map<'de, D, K, V>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    entries(deserializer).map(BTreeMap::from_iter)
}

/// A map's entries as they come, for a map type to build itself from at once.
pub fn entries<'de, D, K, V>(deserializer: D) -> Result<Vec<(K, V)>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de>,
    V: Deserialize<'de>,
{
    struct Entries<K, V>(PhantomData<(K, V)>);

    impl<'de, K, V> Visitor<'de> for Entries<K, V>
    where
        K: Deserialize<'de>,
        V: Deserialize<'de>,
    {
        type Value = Vec<(K, V)>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries =
                Vec::with_capacity(map.size_hint().unwrap_or(0).min(MAX_PREALLOCATED));
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_map(Entries(PhantomData))
}

/// A `BTreeSet`, built from its elements at once.
pub fn set<'de, D, T>(deserializer: D) -> Result<BTreeSet<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Ord,
{
    Vec::deserialize(deserializer).map(BTreeSet::from_iter)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "super::map")]
        map: BTreeMap<u32, String>,
        #[serde(deserialize_with = "super::set")]
        set: BTreeSet<String>,
    }

    /// In order or not, with or without repeats: the same map and set as inserting one by one.
    #[test]
    fn builds_what_inserting_one_by_one_builds() {
        let text = r#"{"map": {"3": "c", "1": "a", "2": "b", "1": "z"}, "set": ["y", "x", "y"]}"#;
        let holder: Holder = serde_json::from_str(text).unwrap();
        let map = BTreeMap::from([(1, "z".to_owned()), (2, "b".into()), (3, "c".into())]);
        assert_eq!(holder.map, map);
        assert_eq!(holder.set, BTreeSet::from(["x".to_owned(), "y".into()]));
    }
}
