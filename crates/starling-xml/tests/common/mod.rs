//! Helpers shared by the parser tests: feeding input in every split, and picking out results.
#![allow(dead_code)] // each test file uses only some of them

use starling_xml::{Element, Limits, StreamEvent, StreamParser, XmlError};

pub type Outcome = (Vec<StreamEvent>, Option<XmlError>);

pub const HEADER: &str = "<?xml version='1.0'?><stream:stream to='im.example.com' version='1.0' \
     xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Feeds `chunks` in order, draining events after each, until the first error.
pub fn run_chunks(chunks: &[&[u8]], limits: &Limits) -> Outcome {
    let mut p = StreamParser::new(limits.clone());
    let mut events = Vec::new();
    for c in chunks {
        p.feed(c);
        loop {
            match p.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => {
                    // Errors are sticky.
                    assert_eq!(p.next_event(), Err(e.clone()));
                    return (events, Some(e));
                }
            }
        }
    }
    (events, None)
}

pub fn run(input: &[u8]) -> Outcome {
    run_chunks(&[input], &Limits::default())
}

/// Tiny deterministic PRNG for chunk sizes (no dependencies).
pub fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

/// Every split of `input` gives the same outcome as feeding it whole: at each single split
/// point, one byte at a time, and a few random chunkings. Returns that outcome.
pub fn check_splits_with(input: &[u8], limits: &Limits) -> Outcome {
    let whole = run_chunks(&[input], limits);
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(run_chunks(&[a, b], limits), whole, "split at {i}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run_chunks(&bytes, limits), whole, "one byte at a time");
    let mut seed = input.len() as u64;
    for _ in 0..8 {
        let mut chunks = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = (1 + lcg(&mut seed) as usize % 17).min(rest.len());
            let (c, r) = rest.split_at(n);
            chunks.push(c);
            rest = r;
        }
        assert_eq!(run_chunks(&chunks, limits), whole, "random chunks");
    }
    whole
}

pub fn check_splits(input: &str) -> Outcome {
    check_splits_with(input.as_bytes(), &Limits::default())
}

pub fn stanzas(events: &[StreamEvent]) -> Vec<&Element> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Stanza(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The error of a stream made of the standard header followed by `body`.
pub fn error_after_header(body: &str) -> XmlError {
    let (_, err) = check_splits(&format!("{HEADER}{body}"));
    err.unwrap_or_else(|| panic!("no error for {body}"))
}

pub fn nwf(e: &XmlError) -> bool {
    matches!(e, XmlError::NotWellFormed(_))
}
