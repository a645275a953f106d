use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn buckets_are_utc_intervals() {
    let clock = Clock::start(Duration::from_secs(1));
    let now = Instant::now();
    let b = clock.bucket(now);
    let utc = clock.utc(now).timestamp() as u64;
    assert!(
        b == utc || b + 1 == utc || b == utc + 1,
        "bucket {b} vs unix second {utc}"
    );
    assert_eq!(clock.bucket(now + Duration::from_secs(3)), b + 3);
    assert!(clock.end_of(b) > now && clock.end_of(b) <= now + Duration::from_secs(1));
}

#[test]
fn closed_intervals_move_to_the_series_and_are_sealed_without_losing_counts() {
    let series = Series::new(Clock::start(Duration::from_secs(1)));
    let mut stripe = Intervals::default();
    for bucket in 100..110u64 {
        for i in 0..10 {
            stripe.at(bucket).success(ms(1 + i));
        }
        stripe.at(bucket).failure("model.timeout", ms(50));
        series.absorb(stripe.take_before(bucket));
    }
    assert!(
        stripe.take_before(109).is_empty(),
        "nothing older than the open interval is left"
    );
    series.absorb(stripe.take_before(u64::MAX));
    // A late piece of an interval already sealed.
    let mut late = Intervals::default();
    late.at(100).success(ms(7));
    series.absorb(late);
    {
        let slots = series.slots.lock();
        assert!(
            matches!(slots.get(105).unwrap().latency, Hist::Sealed(_)),
            "old intervals are compressed"
        );
        assert_eq!(slots.get(100).unwrap().latency.count(), 12);
        assert!(
            matches!(slots.get(100).unwrap().latency, Hist::Sealed(_)),
            "a late piece of a sealed interval is sealed again"
        );
        assert!(
            slots
                .iter()
                .all(|(_, r)| matches!(r.ttft, Hist::Empty) && matches!(r.itl, Hist::Empty)),
            "no histogram is allocated for what was never recorded"
        );
    }
    let t = series.timeline();
    assert_eq!(t.rows.len(), 10);
    assert_eq!(t.rows[0].requests, 12);
    assert_eq!(t.rows[0].errors["model.timeout"], 1);
    assert_eq!(t.rows[9].requests, 11);
    let h = Timeline::hist(t.rows[0].latency.as_deref()).unwrap();
    assert_eq!(h.len(), 12);
}

/// What a series holds is counted as its rows are made and sealed: the rows' buffers as they
/// grow, each interval's sealed bytes; a late piece that unseals and reseals an interval is
/// not counted twice; the counts are exactly the rows' own.
#[test]
fn a_series_counts_the_bytes_its_rows_hold() {
    let series = Series::new(Clock::start(Duration::from_secs(1)));
    assert_eq!(series.held_bytes(), 0);
    let mut stripe = Intervals::default();
    for bucket in 0..20u64 {
        for i in 0..50 {
            stripe.at(bucket).success(ms(1 + i));
        }
        series.absorb(stripe.take_before(bucket));
        series.gauge(bucket, Gauges::default());
    }
    let recount = |series: &Series| {
        let slots = series.slots.lock();
        let sealed: usize = slots.iter().map(|(_, r)| r.held()).sum();
        (slots.held_bytes() + series.gauges.lock().held_bytes() + sealed) as u64
    };
    let held = series.held_bytes();
    assert_eq!(held, recount(&series));
    let sealed_rows = series.slots.lock().iter().filter(|(_, r)| r.held() > 0).count();
    assert!(
        sealed_rows >= 17,
        "all but the newest intervals are sealed: {sealed_rows}"
    );
    // A row grows what is held by its slots and its sealed histogram, not by kilobytes.
    let per_row = held as f64 / 20.0;
    assert!(per_row > 100.0 && per_row < 2_000.0, "{per_row} bytes per row");

    let mut late = Intervals::default();
    late.at(3).success(ms(7));
    series.absorb(late);
    series.gauge(3, Gauges::default());
    assert_eq!(series.held_bytes(), recount(&series), "a late piece is counted once");
}

#[test]
fn error_codes_are_bounded() {
    let mut m = BTreeMap::new();
    for i in 0..100 {
        count_code(&mut m, &format!("code.{i}"), 1);
    }
    assert_eq!(m.len(), MAX_CODES + 1);
    assert_eq!(m[OTHER_CODE], 100 - MAX_CODES as u64);
    assert_eq!(m.values().sum::<u64>(), 100);
}

#[test]
fn timelines_merge_row_by_row() {
    let mk = |t0: f64, n: u64| {
        let series = Series::new(Clock::start(Duration::from_secs(1)));
        let mut s = Intervals::default();
        for k in 0..3u64 {
            for i in 0..n {
                s.at(t0 as u64 + k).success(ms(i + 1));
            }
        }
        series.absorb(s);
        for k in 0..3u64 {
            let live = Gauges {
                sessions_live: Some(10 * n),
                ..Gauges::default()
            };
            series.gauge(t0 as u64 + k, live);
        }
        series.timeline()
    };
    let mut a = mk(1000.0, 4);
    a.merge(&mk(1001.0, 2)).unwrap();
    let counts: Vec<(f64, u64)> = a.rows.iter().map(|r| (r.t, r.requests)).collect();
    assert_eq!(counts, vec![(1000.0, 4), (1001.0, 6), (1002.0, 6), (1003.0, 2)]);
    // Gauges of one moment add up across the merged runs (two processes' live sessions).
    let live: Vec<Option<u64>> = a.rows.iter().map(|r| r.gauges.sessions_live).collect();
    assert_eq!(live, vec![Some(40), Some(60), Some(60), Some(20)]);
    let h = Timeline::hist(a.rows[1].latency.as_deref()).unwrap();
    assert_eq!(h.len(), 6);
    let mut other = mk(1000.0, 1);
    other.interval_s = 2.0;
    assert!(a.merge(&other).unwrap_err().contains("different intervals"));
}
