//! W3C trace context (`traceparent: 00-<trace-id>-<parent-id>-<flags>`), beside the project's own trace
//! id. A request's trace id becomes the `trace_id` of its order and of every event it causes; where that
//! id is a W3C trace id (32 hex digits, or a UUID, whose 32 digits are one), it also travels as
//! `traceparent` — on HTTP answers and on every message published to RabbitMQ — so that tracing systems
//! see one trace from the client through the saga.

use rand::Rng;

/// The trace id of a `traceparent` header, if the header is well-formed (version `00`, or a later one
/// read as `00` as the specification says), and neither its trace id nor its parent id is all zeros.
pub fn parse_traceparent(header: &str) -> Option<String> {
    let mut parts = header.trim().split('-');
    let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let later_version_fields_ok = version != "00" || parts.next().is_none();
    let ok = hex(version, 2)
        && version != "ff"
        && later_version_fields_ok
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.bytes().any(|b| b != b'0');
    ok.then(|| trace_id.to_owned())
}

/// The W3C form of a trace id: 32 lowercase hex digits as they are, a UUID without its dashes; `None`
/// for any other trace id (a client's `demo-trace-001`, say), which then travels as `x-trace-id` only.
pub fn w3c_trace_id(trace_id: &str) -> Option<String> {
    let digits: String = if trace_id.len() == 36 && trace_id.bytes().filter(|&b| b == b'-').count() == 4 {
        trace_id.chars().filter(|&c| c != '-').collect()
    } else {
        trace_id.to_owned()
    };
    let digits = digits.to_ascii_lowercase();
    (digits.len() == 32 && digits.bytes().all(|b| b.is_ascii_hexdigit()) && digits.bytes().any(|b| b != b'0'))
        .then_some(digits)
}

/// A `traceparent` for `trace_id` with a new parent (span) id, sampled; `None` when the trace id has no
/// W3C form.
pub fn traceparent(trace_id: &str) -> Option<String> {
    let trace = w3c_trace_id(trace_id)?;
    let span: u64 = rand::rng().random_range(1..=u64::MAX);
    Some(format!("00-{trace}-{span:016x}-01"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_traceparent_gives_its_trace_id() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(header).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // A later version may carry more fields.
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn uuids_and_w3c_ids_have_a_w3c_form_and_other_ids_do_not() {
        assert_eq!(
            w3c_trace_id("ae7ba57f-7ee9-4243-8aba-86b3028069de").as_deref(),
            Some("ae7ba57f7ee942438aba86b3028069de")
        );
        assert_eq!(
            w3c_trace_id("4bf92f3577b34da6a3ce929d0e0e4736").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(w3c_trace_id("demo-trace-001"), None);
        let header = traceparent("4bf92f3577b34da6a3ce929d0e0e4736").expect("a traceparent");
        assert_eq!(
            parse_traceparent(&header).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(traceparent("demo-trace-001"), None);
    }
}
