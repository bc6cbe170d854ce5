//! The trace headers of a request: W3C `traceparent` (`actors::trace::parse_traceparent`) and the
//! client's `X-Trace-Id` (`observability::valid_trace_id`), on any header text.
//!
//! Asserts: nothing panics; a `traceparent` that is taken gives a trace id of 32 lower-case hex digits,
//! not all zeros, which is the header's second field; the `traceparent` the node answers for that
//! trace id reads back as the same trace id; a client trace id that is taken is 1–64 characters of
//! `A-Za-z0-9-_.:`, and one of W3C form travels in a `traceparent` that reads back as it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fn lower_hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fuzz_target!(|data: &[u8]| {
    // Header values reach the parsers as text (`HeaderValue::to_str`); bytes that are not are dropped.
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(trace_id) = actors::trace::parse_traceparent(header) {
        assert!(lower_hex(&trace_id, 32), "trace id `{trace_id}` from `{header}`");
        assert!(
            trace_id.bytes().any(|b| b != b'0'),
            "an all-zero trace id from `{header}`"
        );
        let fields: Vec<&str> = header.trim().split('-').collect();
        assert_eq!(fields.get(1), Some(&trace_id.as_str()), "`{header}`");
        assert!(
            fields.first().is_some_and(|v| lower_hex(v, 2) && *v != "ff"),
            "version of `{header}`"
        );
        assert!(
            fields
                .get(2)
                .is_some_and(|p| lower_hex(p, 16) && p.bytes().any(|b| b != b'0'))
        );
        let answered = actors::trace::traceparent(&trace_id);
        assert_eq!(
            answered.as_deref().and_then(actors::trace::parse_traceparent),
            Some(trace_id.clone()),
            "the answered traceparent {answered:?}"
        );
    }
    if ordersaga::observability::valid_trace_id(header) {
        assert!(
            (1..=64).contains(&header.len())
                && header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)),
            "trace id `{header}` taken"
        );
        if let Some(w3c) = actors::trace::w3c_trace_id(header) {
            assert!(lower_hex(&w3c, 32), "W3C form `{w3c}` of `{header}`");
            assert_eq!(
                actors::trace::traceparent(header)
                    .as_deref()
                    .and_then(actors::trace::parse_traceparent),
                Some(w3c),
                "`{header}`"
            );
        }
    }
});
