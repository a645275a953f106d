//! The harness counts the heap bytes its histograms' buckets hold, so that an in-process soak can
//! tell its own growth from the runtime's. One test in its own binary: the count is the process's.

use std::time::Duration;

use aether_harness::stats::{histograms_held_bytes, DurationHist};

#[test]
fn histograms_count_their_buckets_as_they_are_made_widened_merged_cloned_and_dropped() {
    let base = histograms_held_bytes();
    let mut h = DurationHist::default();
    let made = histograms_held_bytes();
    assert!(made > base, "a new histogram holds its first buckets");

    h.record(Duration::from_micros(10));
    let narrow = histograms_held_bytes();
    // From microseconds to 100 s is ~23 doublings: at 3 significant figures each adds a bucket
    // of 1,024 counts of 8 bytes.
    h.record(Duration::from_secs(100));
    let wide = histograms_held_bytes();
    assert!(wide >= narrow + 20 * 1024 * 8, "widened: {narrow} -> {wide}");

    // Merging a wide histogram into a narrow one widens it as much.
    let mut other = DurationHist::default();
    other.record(Duration::from_micros(10));
    let before_merge = histograms_held_bytes();
    other.merge(&h);
    assert!(histograms_held_bytes() >= before_merge + 20 * 1024 * 8);

    let h_bytes = wide - base;
    let with_other = histograms_held_bytes();
    let copy = h.clone();
    assert_eq!(
        histograms_held_bytes(),
        with_other + h_bytes,
        "a clone holds as much again"
    );
    drop(copy);
    drop(other);
    assert_eq!(
        histograms_held_bytes(),
        base + h_bytes,
        "a clone and a merged copy given back"
    );
    drop(h);
    assert_eq!(histograms_held_bytes(), base, "everything given back");

    // A histogram read back from its bytes counts too.
    let mut h = DurationHist::default();
    h.record(Duration::from_millis(250));
    let held = histograms_held_bytes() - base;
    let back = DurationHist::from_bytes(&h.to_bytes()).unwrap();
    assert!(histograms_held_bytes() > base + held, "the copy read back counts");
    drop(back);
    assert_eq!(histograms_held_bytes(), base + held);
}
