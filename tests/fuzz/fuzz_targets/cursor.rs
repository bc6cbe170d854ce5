//! The release audit's query values: the cursor (`routes::release_events::cursor::decode`) on any
//! `cursor=`/`after=` text, and the time filter (`parse_instant`) on any `from=`/`to=` text.
//!
//! Asserts: nothing panics; a cursor that decodes names a release id of 1–64 bytes and an instant of
//! the years 1–9999 (UTC), and the cursor the node would write for that position decodes to the same
//! position (to the microsecond, the precision rows are stored with); a time filter that is taken is
//! an instant of the years 1–9999 too (what every database can compare), which a cursor can carry.

#![no_main]

use actors::read::releases::Position;
use chrono::{Datelike, SubsecRound};
use libfuzzer_sys::fuzz_target;
use ordersaga::routes::release_events::{cursor, parse_instant};

fuzz_target!(|data: &[u8]| {
    // Query values reach the route as text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(at)) = parse_instant("from", &Some(text.to_owned())) {
        assert!((1..=9999).contains(&at.year()), "`{text}` taken as {at}");
        let position = Position {
            created_at: at,
            id: "x".to_owned(),
        };
        assert!(
            cursor::decode(&cursor::encode(&position)).is_some(),
            "`{text}` taken as {at}"
        );
    }
    let Some(position) = cursor::decode(text) else {
        return;
    };
    assert!((1..=9999).contains(&position.created_at.year()), "{position:?}");
    assert!(
        (1..=64).contains(&position.id.len()),
        "a release id of {} bytes",
        position.id.len()
    );
    let written = cursor::encode(&position);
    let again = cursor::decode(&written);
    assert_eq!(
        again.as_ref().map(|p| (p.created_at, p.id.as_str())),
        Some((position.created_at.trunc_subsecs(6), position.id.as_str())),
        "cursor `{text}` decodes to {position:?}, whose cursor `{written}` decodes to {again:?}"
    );
});
