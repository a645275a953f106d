//! The W3C trace context the harness sends with each request over `--target`: a `traceparent`
//! derived from the request's task id and a per-run salt, so the summary can name the trace of
//! any request it keeps (its slowest) without storing an id per request. A server that exports
//! spans (`aether serve` with an OTLP endpoint) continues these traces, so a slow percentile in
//! the summary leads to its spans in Jaeger or Tempo.

/// SplitMix64's finaliser: a well-mixed 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over the task id, salted.
fn hash(salt: u64, task_id: &str) -> u64 {
    task_id.bytes().fold(0xcbf2_9ce4_8422_2325 ^ salt, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes `v` as 16 lowercase hex digits.
fn hex16(v: u64, out: &mut [u8]) {
    aether_contracts::trace::hex_into(&v.to_be_bytes(), &mut out[..16]);
}

/// The trace id's 32 hex digits (ASCII).
fn trace_bytes(h: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    hex16(mix(h) | 1, &mut b[..16]);
    hex16(mix(h ^ 0x5555_5555_5555_5555), &mut b[16..]);
    b
}

/// The trace id (32 hex digits) of `task_id` in the run salted with `salt`.
pub fn trace_id(salt: u64, task_id: &str) -> String {
    trace_bytes(hash(salt, task_id))
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

/// The `traceparent` of `task_id`'s request, as its 55 ASCII bytes: its trace, a span of the
/// harness's own (the client side of the request), sampled. Written into one buffer (it is made
/// for every request the load generator sends, and becomes a header value with no `String`
/// between).
pub fn traceparent_bytes(salt: u64, task_id: &str) -> [u8; 55] {
    let h = hash(salt, task_id);
    let mut b = *b"00-00000000000000000000000000000000-0000000000000000-01";
    b[3..35].copy_from_slice(&trace_bytes(h));
    hex16(mix(h ^ 0xAAAA) | 1, &mut b[36..52]);
    b
}

/// [`traceparent_bytes`] as a `String`.
pub fn traceparent(salt: u64, task_id: &str) -> String {
    traceparent_bytes(salt, task_id)
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_ids_trace_is_stable_distinct_and_well_formed() {
        let tp = traceparent(7, "burst-t1");
        assert!(aether_contracts::trace::is_traceparent(&tp), "{tp}");
        assert_eq!(tp.split('-').nth(1).unwrap(), trace_id(7, "burst-t1"));
        assert_eq!(tp.as_bytes(), traceparent_bytes(7, "burst-t1"));
        assert_eq!(trace_id(7, "burst-t1"), trace_id(7, "burst-t1"));
        // The digits are those `{:016x}` writes.
        let h = hash(7, "burst-t1");
        assert_eq!(
            tp,
            format!(
                "00-{:016x}{:016x}-{:016x}-01",
                mix(h) | 1,
                mix(h ^ 0x5555_5555_5555_5555),
                mix(h ^ 0xAAAA) | 1
            )
        );
        assert_ne!(trace_id(7, "burst-t1"), trace_id(7, "burst-t2"));
        assert_ne!(
            trace_id(7, "burst-t1"),
            trace_id(8, "burst-t1"),
            "each run its own traces"
        );
    }
}
