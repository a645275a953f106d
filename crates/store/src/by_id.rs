//! [`ById`]: a shared value as the key of a hash map, found by its id.
//!
//! A map from id to `Arc<value>` takes 24 bytes a slot (the `Arc<str>` key's two words and the
//! value's pointer) and repeats the id the value already holds. Keyed by the value itself, a slot
//! is one pointer: `DashMap<ById<T>, ()>` hashes each entry as its id hashes, and `Borrow<str>`
//! lets `get(&str)`, `remove(&str)` and friends find it. The memory store's sessions and the
//! runtime's chat sessions are kept this way.
//!
//! Such a map's tables grow at each new peak and never shrink as entries leave, so
//! [`shrink_if_sparse`] gives a burst's slack back once it has been swept ([`table_slots`]
//! counts what the tables take). A table grows by doubling: under steady load it steps up each
//! time a shard's peak crosses a threshold, for as long as new peaks come (a 30-minute soak saw
//! steps until minute 20), and each step rehashes the shard under its write lock on a turn's path.
//! [`reserved_map`] sizes the tables for the sessions a runtime is configured to hold from the
//! start (9 bytes a slot: ~1.2 MB for 100,000 sessions, of which only the control bytes, ~130 KB,
//! are written up front), so that below that bound they never grow; a shrink keeps the
//! reservation.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use dashmap::DashMap;

/// What has an id to be found by.
pub trait HasId {
    fn id(&self) -> &str;
}

/// `Arc<T>` as a map key: hashed, compared and borrowed as `T`'s id.
pub struct ById<T>(pub Arc<T>);

impl<T> Clone for ById<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: HasId> Hash for ById<T> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // As `str` hashes, so that a lookup by `&str` finds it.
        self.0.id().hash(h)
    }
}

impl<T: HasId> PartialEq for ById<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

impl<T: HasId> Eq for ById<T> {}

impl<T: HasId> Borrow<str> for ById<T> {
    fn borrow(&self) -> &str {
        self.0.id()
    }
}

/// The most sessions a map's tables are reserved for up front, whatever the configured bound:
/// 100,000 take ~1.2 MB of table (131,072 slots); a larger bound grows past it as any table does.
pub const MAX_RESERVED: usize = 100_000;

/// A map whose tables hold `entries` (at most [`MAX_RESERVED`]) without growing.
pub fn reserved_map<T: HasId>(entries: usize) -> DashMap<ById<T>, ()> {
    DashMap::with_capacity(entries.min(MAX_RESERVED))
}

/// A map is sparse when its tables have more than this many slots per entry held (a full table
/// has 8 slots per 7 entries, one that just doubled 16 per 7)...
const SPARSE_RATIO: usize = 8;
/// ...and more than this many slots in all (below it the slack is ~150 KB at most: not worth a
/// rehash).
const SPARSE_FLOOR: usize = 1 << 14;

/// Slots in `map`'s tables, used or not: what the tables take (9 bytes a slot for a
/// `DashMap<ById<T>, ()>`), whatever the map holds now. (Not `DashMap::capacity`: that counts
/// only the room left before the next growth, and a removed entry's slot often stays a
/// tombstone that it does not count, so a swept table's capacity understates its size.)
pub fn table_slots<T: HasId>(map: &DashMap<ById<T>, ()>) -> usize {
    map.shards().iter().map(|shard| shard.read().buckets()).sum()
}

/// Shrinks `map`'s tables to fit when they are sparse (more than 8 slots per entry held, or per
/// entry `reserved` for, and more than 16,384 slots in all), never below the room for
/// `reserved` entries (the reservation of [`reserved_map`]), and says whether it did.
///
/// A hash table grows when its entries reach a new peak and keeps that size as they leave: after
/// a burst of a million sessions, swept, each session map would keep ~2 M slots (18 MB) for the
/// life of the process. A table shrunk to fit has at most about 2.3 slots per entry, so load whose
/// live count swings by less than 3× between sweeps never shrinks a table only to regrow it. Each
/// shard is rehashed under its write lock: call it where entries were just removed in bulk (the
/// sweeper, a purge), not on a turn's path.
pub fn shrink_if_sparse<T: HasId>(map: &DashMap<ById<T>, ()>, reserved: usize) -> bool {
    let reserved = reserved.min(MAX_RESERVED);
    let slots = table_slots(map);
    if slots <= SPARSE_FLOOR || slots <= SPARSE_RATIO * map.len().max(reserved) {
        return false;
    }
    // As `DashMap::with_capacity` shares a capacity out among the shards.
    let per_shard = reserved.div_ceil(map.shards().len());
    let mut shrunk = false;
    for shard in map.shards() {
        let mut table = shard.write();
        let before = table.buckets();
        table.shrink_to(per_shard, |(k, _)| map.hasher().hash_one(k));
        shrunk |= table.buckets() < before;
    }
    shrunk
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(Arc<str>);

    impl HasId for Named {
        fn id(&self) -> &str {
            &self.0
        }
    }

    #[test]
    fn a_value_is_found_by_its_id_and_a_slot_is_one_pointer() {
        let map = DashMap::new();
        map.insert(ById(Arc::new(Named("a".into()))), ());
        map.insert(ById(Arc::new(Named("b".into()))), ());
        assert!(map.get("a").is_some_and(|e| &*e.key().0 .0 == "a"));
        assert!(map.get("c").is_none());
        // The same id again is the same key.
        assert!(map.insert(ById(Arc::new(Named("a".into()))), ()).is_some());
        assert_eq!(map.len(), 2);
        assert!(map.remove("b").is_some());
        assert_eq!(std::mem::size_of::<(ById<Named>, ())>(), 8);
    }

    fn named(n: usize) -> DashMap<ById<Named>, ()> {
        let map = DashMap::new();
        for i in 0..n {
            map.insert(ById(Arc::new(Named(i.to_string().into()))), ());
        }
        map
    }

    #[test]
    fn a_swept_burst_gives_its_slack_back_and_steady_maps_are_left_alone() {
        let map = named(100_000);
        let peak = table_slots(&map);
        assert!(peak >= 100_000 * 8 / 7, "{peak} slots");
        assert!(!shrink_if_sparse(&map, 0), "a full map is not sparse");
        // Sweep all but 1,000: the table keeps its peak size until shrunk.
        map.retain(|k, _| k.0 .0.parse::<usize>().unwrap() < 1_000);
        assert_eq!(table_slots(&map), peak);
        assert!(shrink_if_sparse(&map, 0));
        let shrunk = table_slots(&map);
        assert!(shrunk < peak / 16, "{shrunk} slots left of {peak}");
        assert_eq!(map.len(), 1_000, "nothing lost");
        assert!(map.get("999").is_some() && map.get("1000").is_none());
        assert!(!shrink_if_sparse(&map, 0), "already fitted: below the floor");

        // Live entries swinging by 3× (a sweep taking two in three) leave the table as it is.
        let map = named(50_000);
        map.retain(|k, _| k.0 .0.parse::<usize>().unwrap() % 3 == 0);
        assert!(!shrink_if_sparse(&map, 0));
        // Emptied below the floor's size, a small map is not worth a rehash.
        let map = named(5_000);
        map.clear();
        assert!(!shrink_if_sparse(&map, 0));
    }

    #[test]
    fn a_reserved_map_never_grows_below_its_reservation_and_a_shrink_keeps_it() {
        let map: DashMap<ById<Named>, ()> = reserved_map(20_000);
        let reserved = table_slots(&map);
        assert!(reserved >= 20_000 * 8 / 7, "{reserved} slots for 20,000");
        assert!(reserved <= 4 * 20_000, "{reserved} slots for 20,000");
        // Three quarters of it, so that no shard's share (random, and more shards on more
        // cores) passes its table's.
        for i in 0..15_000 {
            map.insert(ById(Arc::new(Named(i.to_string().into()))), ());
        }
        assert_eq!(table_slots(&map), reserved, "filled without a rehash");
        // Nearly empty again: sparse by count, but the reservation stays.
        map.retain(|k, _| k.0 .0.parse::<usize>().unwrap() < 10);
        assert!(!shrink_if_sparse(&map, 20_000));
        assert_eq!(table_slots(&map), reserved);
        // A burst past the reservation grows the tables; once swept, they go back to it.
        for i in 0..200_000 {
            map.insert(ById(Arc::new(Named(i.to_string().into()))), ());
        }
        assert!(table_slots(&map) > 4 * reserved);
        map.retain(|k, _| k.0 .0.parse::<usize>().unwrap() < 10);
        assert!(shrink_if_sparse(&map, 20_000));
        assert_eq!(table_slots(&map), reserved, "back to the reservation, not below");
        assert!(map.get("9").is_some() && map.len() == 10);
        // The reservation is capped: a larger bound is not taken up front.
        let huge: DashMap<ById<Named>, ()> = reserved_map(10_000_000);
        assert!(table_slots(&huge) <= 4 * MAX_RESERVED);
    }
}
