//! The W3C trace context that outgoing calls carry (`traceparent`): model requests over HTTP
//! (OpenAI-compatible, Gemini) and MCP tool calls (in the request's `_meta`, and as an HTTP
//! header). The process's tracing setup names where the current context comes from
//! ([`set_traceparent_source`]; the CLI does when it exports spans); with none, calls carry
//! nothing and pay one atomic load.

use std::sync::OnceLock;

/// The header (and MCP `_meta` key) of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

static SOURCE: OnceLock<fn() -> Option<String>> = OnceLock::new();

/// Names the function that renders the current span's context as a `traceparent`
/// (`00-{trace id}-{span id}-{flags}`). Once per process; `false` when one was already set.
pub fn set_traceparent_source(source: fn() -> Option<String>) -> bool {
    SOURCE.set(source).is_ok()
}

/// The current context's `traceparent`, when a source is set and a span is current.
#[inline]
pub fn traceparent() -> Option<String> {
    SOURCE.get().and_then(|f| f())
}

/// A valid `traceparent`: version `00`, 32 and 16 lowercase hex digits (not all zero), 2 of
/// flags. Used by tests and by whoever checks one from outside.
pub fn is_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_checked() {
        assert!(is_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"));
    }
}
