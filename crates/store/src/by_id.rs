//! [`ById`]: a shared value as the key of a hash map, found by its id.
//!
//! A map from id to `Arc<value>` takes 24 bytes a slot (the `Arc<str>` key's two words and the
//! value's pointer) and repeats the id the value already holds. Keyed by the value itself, a slot
//! is one pointer: `DashMap<ById<T>, ()>` hashes each entry as its id hashes, and `Borrow<str>`
//! lets `get(&str)`, `remove(&str)` and friends find it. The memory store's sessions and the
//! runtime's chat sessions are kept this way.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

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
        let map = dashmap::DashMap::new();
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
}
