//! The stream parser on whole XMPP streams (RFC 6120 §4): stream headers, stanzas,
//! keepalives, the closing tag, restarts, and robustness against corrupted input.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use starling_xml::{ns, parse_document, Element, Limits, StreamEvent, StreamParser};

#[test]
fn full_client_stream() {
    let input = "<?xml version='1.0' encoding='utf-8'?>\n\
        <stream:stream from='juliet@im.example.com' to='im.example.com' version='1.0' \
        xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>\n  \
        <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n \
        <message to='romeo@example.net' type='chat' id='a1'><body>Wherefore art thou, Romeo? \
        &lt;3 &#x1F600; \u{e9}</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>\
        <iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
        <resource>balcony</resource></bind></iq> \n</stream:stream>";
    let (events, err) = check_splits(input);
    assert_eq!(err, None);
    let header = Element::new("stream", ns::STREAM)
        .with_attr("from", "juliet@im.example.com")
        .with_attr("to", "im.example.com")
        .with_attr("version", "1.0")
        .with_attr("xml:lang", "en");
    let expected = vec![
        StreamEvent::Open {
            header,
            default_ns: ns::CLIENT.into(),
        },
        StreamEvent::Stanza(Element::new("starttls", "urn:ietf:params:xml:ns:xmpp-tls")),
        StreamEvent::Stanza(
            Element::new("message", ns::CLIENT)
                .with_attr("to", "romeo@example.net")
                .with_attr("type", "chat")
                .with_attr("id", "a1")
                .with_child(
                    Element::new("body", ns::CLIENT)
                        .with_text("Wherefore art thou, Romeo? <3 \u{1F600} \u{e9}"),
                )
                .with_child(Element::new(
                    "active",
                    "http://jabber.org/protocol/chatstates",
                )),
        ),
        StreamEvent::Stanza(
            Element::new("iq", ns::CLIENT)
                .with_attr("type", "set")
                .with_attr("id", "b1")
                .with_child(
                    Element::new("bind", "urn:ietf:params:xml:ns:xmpp-bind").with_child(
                        Element::new("resource", "urn:ietf:params:xml:ns:xmpp-bind")
                            .with_text("balcony"),
                    ),
                ),
        ),
        StreamEvent::Close,
    ];
    assert_eq!(events, expected);
}

#[test]
fn server_stream_features_and_error() {
    let input = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
        id='abc' version='1.0'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
        <mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>\
        <stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>\
        </stream:stream>";
    let (events, err) = check_splits(input);
    assert_eq!(err, None);
    let StreamEvent::Open { header, default_ns } = &events[0] else {
        panic!("no open: {events:?}");
    };
    assert!(header.is("stream", ns::STREAM));
    assert_eq!(default_ns, ns::SERVER);
    assert_eq!(header.attr("id"), Some("abc"));
    assert_eq!(
        header.attrs().count(),
        2,
        "xmlns declarations are not attributes"
    );
    let s = stanzas(&events);
    assert!(s[0].is("features", ns::STREAM));
    let mechs = s[0]
        .get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .unwrap();
    assert_eq!(
        mechs
            .child_text("mechanism", "urn:ietf:params:xml:ns:xmpp-sasl")
            .as_deref(),
        Some("SCRAM-SHA-1")
    );
    assert!(s[1].is("error", ns::STREAM));
    assert!(s[1].has_child("not-well-formed", "urn:ietf:params:xml:ns:xmpp-streams"));
    assert_eq!(events.last(), Some(&StreamEvent::Close));
}

#[test]
fn whitespace_keepalives_are_ignored() {
    let input = format!("{HEADER} \n\t \r\n<presence/>  \n \n<presence/>\n\n");
    let (events, err) = check_splits(&input);
    assert_eq!(err, None);
    assert_eq!(events.len(), 3);
    assert!(nwf(&error_after_header(" hello ")));
    assert!(nwf(&error_after_header("&amp;")));
}

#[test]
fn close_and_after() {
    let (events, err) = check_splits(&format!("{HEADER}<presence/></stream:stream>garbage<<<"));
    assert_eq!(err, None, "input after the close is ignored");
    assert_eq!(events.len(), 3);
    assert_eq!(events[2], StreamEvent::Close);
}

#[test]
fn stream_restart_with_reset() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(
        format!("{HEADER}<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>{HEADER}<iq/>")
            .as_bytes(),
    );
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open { .. }))));
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(_)))));
    p.reset();
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open { .. }))));
    let Ok(Some(StreamEvent::Stanza(iq))) = p.next_event() else {
        panic!("no iq");
    };
    assert!(iq.is("iq", ns::CLIENT));
}

#[test]
fn mutated_streams_never_panic_and_split_consistently() {
    // A poor man's fuzzer: corrupt a valid stream in many small ways; whatever the outcome,
    // it must not panic and must not depend on how the bytes were split.
    let base = format!(
        "{HEADER}<message to='a&amp;b' id=\"x\"><body>hi &#x41; <![CDATA[c]]> \u{e9}\u{1F600}</body>\
         <x xmlns='urn:x' xmlns:p='urn:p'><p:y p:a='1'/></x></message>\r\n<presence/></stream:stream>"
    );
    let specials: &[u8] = b"<>&;'\"/!?[]-=: \r\n#x\xC3\xA9\xFF\x00";
    let mut seed = 42u64;
    for _ in 0..400 {
        let mut input = base.as_bytes().to_vec();
        for _ in 0..1 + lcg(&mut seed) % 3 {
            let at = lcg(&mut seed) as usize % input.len();
            let b = specials[lcg(&mut seed) as usize % specials.len()];
            match lcg(&mut seed) % 3 {
                0 => input[at] = b,
                1 => input.insert(at, b),
                _ => {
                    input.remove(at);
                }
            }
        }
        let limits = Limits::default();
        let whole = run_chunks(&[&input], &limits);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            run_chunks(&bytes, &limits),
            whole,
            "{}",
            String::from_utf8_lossy(&input)
        );
        let mut rest = &input[..];
        let mut chunks = Vec::new();
        while !rest.is_empty() {
            let (c, r) = rest.split_at((1 + lcg(&mut seed) as usize % 29).min(rest.len()));
            chunks.push(c);
            rest = r;
        }
        assert_eq!(
            run_chunks(&chunks, &limits),
            whole,
            "{}",
            String::from_utf8_lossy(&input)
        );
        // The same bytes as a document must not panic either.
        let _ = parse_document(&input[HEADER.len().min(input.len())..], ns::CLIENT, &limits);
    }
}
