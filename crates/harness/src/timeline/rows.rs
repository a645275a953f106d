//! [`Rows`]: a series' values by interval, in one ring buffer indexed from the first interval
//! seen, whose heap is known to the byte.
//!
//! A run's intervals are consecutive, and what arrives is almost always the newest or the one
//! before it, so the rows sit side by side: a soak of an hour at one-second intervals keeps
//! 3,600 of them. A tree map kept them before, and its nodes' slack (a leaf filled in order ends
//! about half full) was heap the series held without counting it: a soak's "heap less the
//! harness's data" then read the difference as the run's growth. Here what is held is the
//! buffer's capacity, counted as it changes.

use std::collections::VecDeque;

/// Values of type `T` by interval number (of one clock: the numbers of a run are contiguous).
pub(crate) struct Rows<T> {
    /// The interval of `rows[0]`; meaningless while `rows` is empty.
    first: u64,
    rows: VecDeque<Option<T>>,
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Self {
            first: 0,
            rows: VecDeque::new(),
        }
    }
}

impl<T> Rows<T> {
    /// The heap the rows' buffer holds: its capacity, whether filled or not.
    pub(crate) fn held_bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<Option<T>>()
    }

    fn index(&self, bucket: u64) -> Option<usize> {
        let i = usize::try_from(bucket.checked_sub(self.first)?).ok()?;
        (i < self.rows.len()).then_some(i)
    }

    pub(crate) fn get(&self, bucket: u64) -> Option<&T> {
        self.rows.get(self.index(bucket)?)?.as_ref()
    }

    /// The row of `bucket`, made empty (`None`) first where there is none, with the rows between
    /// it and the others.
    fn slot(&mut self, bucket: u64) -> &mut Option<T> {
        if self.rows.is_empty() {
            self.first = bucket;
        }
        if bucket < self.first {
            for _ in bucket..self.first {
                self.rows.push_front(None);
            }
            self.first = bucket;
        }
        let i = usize::try_from(bucket - self.first).expect("a run's intervals fit in memory");
        while self.rows.len() <= i {
            self.rows.push_back(None);
        }
        &mut self.rows[i]
    }

    /// The value of `bucket`, its default made first where there is none.
    pub(crate) fn entry(&mut self, bucket: u64) -> &mut T
    where
        T: Default,
    {
        self.slot(bucket).get_or_insert_with(T::default)
    }

    /// Puts `value` at `bucket`; what was there before.
    pub(crate) fn insert(&mut self, bucket: u64, value: T) -> Option<T> {
        self.slot(bucket).replace(value)
    }

    /// The values of the intervals `from..to` that have one.
    pub(crate) fn range_mut(&mut self, from: u64, to: u64) -> impl Iterator<Item = &mut T> {
        let start = (from.max(self.first) - self.first).min(self.rows.len() as u64) as usize;
        let end = (to.max(self.first) - self.first).min(self.rows.len() as u64) as usize;
        self.rows.range_mut(start..end.max(start)).flatten()
    }

    /// The first and last intervals that have a value.
    pub(crate) fn span(&self) -> Option<(u64, u64)> {
        let first = self.rows.iter().position(Option::is_some)?;
        let last = self.rows.iter().rposition(Option::is_some)?;
        Some((self.first + first as u64, self.first + last as u64))
    }

    /// The intervals that have a value, with it, in order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        let first = self.first;
        self.rows
            .iter()
            .enumerate()
            .filter_map(move |(i, v)| Some((first + i as u64, v.as_ref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_found_by_interval_whatever_the_order_they_come_in() {
        let mut rows = Rows::<u64>::default();
        assert_eq!(rows.span(), None);
        *rows.entry(105) += 5;
        *rows.entry(107) += 7;
        *rows.entry(103) += 3;
        assert_eq!(rows.insert(107, 70), Some(7));
        assert_eq!(rows.get(104), None, "a gap has no value");
        assert_eq!(rows.get(99), None);
        assert_eq!(rows.get(200), None);
        assert_eq!(rows.span(), Some((103, 107)));
        assert_eq!(rows.iter().collect::<Vec<_>>(), [(103, &3), (105, &5), (107, &70)]);
        let touched: Vec<u64> = rows.range_mut(100, 106).map(|v| *v).collect();
        assert_eq!(
            touched,
            [3, 5],
            "only the values in the range, and only those that exist"
        );
        assert_eq!(rows.range_mut(108, 300).count(), 0);
        assert_eq!(rows.range_mut(106, 104).count(), 0, "an empty range");
    }

    #[test]
    fn what_is_held_is_the_buffer_s_capacity() {
        let mut rows = Rows::<[u64; 4]>::default();
        assert_eq!(rows.held_bytes(), 0);
        for b in 0..100 {
            rows.insert(b, [b; 4]);
        }
        let slot = std::mem::size_of::<Option<[u64; 4]>>();
        assert!(rows.held_bytes() >= 100 * slot);
        assert_eq!(rows.held_bytes() % slot, 0);
    }
}
