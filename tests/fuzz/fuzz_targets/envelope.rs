//! The envelope decoder (`actors::envelope::Envelope::decode`), on any bytes a broker can deliver.
//!
//! Asserts: decoding never panics; an envelope that decodes has an `event_id` of 1–255 bytes and a known
//! `event_type`, encodes, and its encoding decodes to the same envelope (the re-published form of a
//! message — a retry, a replayed dead letter — reads as the original did).

#![no_main]

use actors::envelope::{ENVELOPE_VERSION, Envelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::decode(data) else {
        return;
    };
    assert!(
        !envelope.event_id.is_empty() && envelope.event_id.len() <= 255,
        "accepted event_id of {} bytes",
        envelope.event_id.len()
    );
    let text = match envelope.encode() {
        Ok(text) => text,
        Err(e) => panic!("a decoded envelope does not encode: {e}\n{envelope:?}"),
    };
    let again = match Envelope::decode(text.as_bytes()) {
        Ok(again) => again,
        Err(e) => panic!("the encoding of a decoded envelope does not decode: {e}\n{text}"),
    };
    assert_eq!(again, envelope, "round trip changed the envelope\n{text}");
    // The encoding is what the contract says: the current version, the event's own type.
    let wire: serde_json::Value = match serde_json::from_str(&text) {
        Ok(wire) => wire,
        Err(e) => panic!("the encoding is not JSON: {e}\n{text}"),
    };
    assert_eq!(
        wire["version"].to_string(),
        ENVELOPE_VERSION.to_string(),
        "{text}"
    );
    assert_eq!(wire["event_type"].as_str(), Some(envelope.event_type()), "{text}");
});
