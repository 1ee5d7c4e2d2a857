//! The resource limits: stanza size (raw and built), depth, attributes, namespace length, and
//! how much stays buffered.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use starling_xml::{ns, parse_document, Limits, StreamEvent, StreamParser, XmlError};

#[test]
fn stanza_size_limit_triggers_before_the_stanza_ends() {
    let limits = Limits {
        max_stanza_bytes: 1024,
        ..Limits::default()
    };
    // Streaming body text: the error comes once the stanza passes the limit, long before it
    // would end.
    let mut p = StreamParser::new(limits.clone());
    p.feed(HEADER.as_bytes());
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open { .. }))));
    p.feed(b"<message><body>");
    assert_eq!(p.next_event(), Ok(None));
    let mut fed = 15;
    let err = loop {
        p.feed(&[b'a'; 100]);
        fed += 100;
        match p.next_event() {
            Ok(None) => assert!(fed <= 1024, "still buffering at {fed} bytes"),
            Ok(Some(e)) => panic!("unexpected {e:?}"),
            Err(e) => break e,
        }
        assert!(p.buffered_bytes() <= 1024);
    };
    assert!(matches!(err, XmlError::LimitExceeded(_)), "{err:?}");
    assert!(fed <= 1024 + 100);

    // An unterminated start tag (no text to consume) is caught too.
    let mut p = StreamParser::new(limits.clone());
    p.feed(HEADER.as_bytes());
    p.feed(b"<message to='");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open { .. }))));
    assert_eq!(p.next_event(), Ok(None));
    p.feed(&[b'x'; 1100]);
    assert!(matches!(p.next_event(), Err(XmlError::LimitExceeded(_))));

    // Exactly at the limit is fine; one byte more is not; the limit is per stanza.
    let stanza = |n: usize| format!("<message><body>{}</body></message>", "b".repeat(n - 32));
    assert_eq!(stanza(1024).len(), 1024);
    let (events, err) = check_splits_with(
        format!("{HEADER}{}{}", stanza(1024), stanza(1024)).as_bytes(),
        &limits,
    );
    assert_eq!((events.len(), err), (3, None));
    let (events, err) = check_splits_with(
        format!("{HEADER}{}{}", stanza(1024), stanza(1025)).as_bytes(),
        &limits,
    );
    assert_eq!(events.len(), 2);
    assert!(matches!(err, Some(XmlError::LimitExceeded(_))));

    // The stream header is capped as well.
    let mut p = StreamParser::new(limits);
    p.feed(b"<stream:stream to='");
    p.feed(&vec![b'x'; 20 * 1024]);
    assert!(matches!(p.next_event(), Err(XmlError::LimitExceeded(_))));
}

#[test]
fn depth_and_attribute_limits() {
    let limits = Limits {
        max_depth: 4,
        max_attrs: 3,
        ..Limits::default()
    };
    const HEADER: &str =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    let ok = format!("{HEADER}<a><b><c><d/></c></b></a><a x='1' y='2' xmlns:p='urn:p'/>");
    let (events, err) = check_splits_with(ok.as_bytes(), &limits);
    assert_eq!((events.len(), err), (3, None));
    let deep = format!("{HEADER}<a><b><c><d><e/></d></c></b></a>");
    let (_, err) = check_splits_with(deep.as_bytes(), &limits);
    assert!(matches!(err, Some(XmlError::LimitExceeded(_))), "{err:?}");
    let many = format!("{HEADER}<a x='1' y='2' z='3' w='4'/>");
    let (_, err) = check_splits_with(many.as_bytes(), &limits);
    assert!(matches!(err, Some(XmlError::LimitExceeded(_))), "{err:?}");
}

#[test]
fn buffered_bytes_drop_after_each_stanza() {
    let mut p = StreamParser::new(Limits::default());
    p.feed(HEADER.as_bytes());
    assert_eq!(p.buffered_bytes(), HEADER.len());
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open { .. }))));
    assert_eq!(p.buffered_bytes(), 0);
    let big = format!("<message><body>{}</body></message>", "z".repeat(10_000));
    p.feed(&big.as_bytes()[..5_000]);
    assert_eq!(p.next_event(), Ok(None));
    assert_eq!(
        p.buffered_bytes(),
        5_000,
        "the partial stanza is accounted for"
    );
    p.feed(&big.as_bytes()[5_000..]);
    p.feed(b"<presence");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(_)))));
    assert_eq!(p.buffered_bytes(), "<presence".len());
    assert_eq!(p.next_event(), Ok(None));
    p.shrink();
    assert_eq!(p.buffered_bytes(), "<presence".len());
    p.feed(b"/>");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(_)))));
    assert_eq!(p.buffered_bytes(), 0);
    p.shrink();
    assert_eq!(p.next_event(), Ok(None));
}

#[test]
fn big_stanza_fed_one_byte_at_a_time() {
    // Quadratic rescanning would make this test take minutes.
    let n = 100_000;
    let input = format!(
        "{HEADER}<message id='{}'><body>{}</body></message>",
        "i".repeat(n),
        "t\u{e9}".repeat(n / 3)
    );
    let mut p = StreamParser::new(Limits::default());
    let mut got = 0;
    for b in input.as_bytes().chunks(1) {
        p.feed(b);
        while let Some(ev) = p.next_event().expect("valid") {
            got += 1;
            if let StreamEvent::Stanza(m) = ev {
                assert_eq!(m.attr("id").map(str::len), Some(n));
            }
        }
    }
    assert_eq!(got, 2);
}

#[test]
fn namespace_uris_are_capped() {
    let ok = "u".repeat(1024);
    let long = "u".repeat(1025);
    let (events, err) = run(format!("{HEADER}<iq xmlns='{ok}'><a/></iq>").as_bytes());
    assert_eq!((events.len(), err), (2, None));
    assert_eq!(stanzas(&events)[0].ns(), ok);
    let too_long = XmlError::LimitExceeded("namespace length");
    for body in [
        format!("<iq xmlns='{long}'/>"),
        format!("<iq xmlns:p='{long}'/>"),
        // Decoded length counts; the cap applies wherever the declaration is.
        format!("<iq><query xmlns='{}&amp;'/></iq>", "u".repeat(1024)),
    ] {
        assert_eq!(error_after_header(&body), too_long, "{body}");
        assert_eq!(
            parse_document(body.as_bytes(), ns::CLIENT, &Limits::default()),
            Err(too_long.clone())
        );
    }
    // On the stream header too.
    let header = format!(
        "<stream:stream xmlns='{long}' xmlns:stream='{}'>",
        ns::STREAM
    );
    assert_eq!(run(header.as_bytes()).1, Some(too_long));
}

/// The reported attack: a long namespace on a stanza, inherited by many tiny children. Input
/// stays far below the raw limit; what would be built is far above it.
#[test]
fn inherited_namespace_counts_against_the_stanza_limit() {
    let limits = Limits {
        max_stanza_bytes: 10_000,
        ..Limits::default()
    };
    let stanza = |ns_len: usize, kids: usize| {
        format!(
            "<iq xmlns='{}'>{}</iq>",
            "u".repeat(ns_len),
            "<a/>".repeat(kids)
        )
    };
    let attack = stanza(1000, 200);
    assert!(attack.len() < 2_000, "raw input is well under the limit");
    let size = XmlError::LimitExceeded("stanza size");
    let (events, err) = check_splits_with(format!("{HEADER}{attack}").as_bytes(), &limits);
    assert_eq!((events.len(), err), (1, Some(size.clone())));
    assert_eq!(
        parse_document(attack.as_bytes(), ns::CLIENT, &limits),
        Err(size.clone())
    );

    // The budget is per stanza: two that each build ~6 KB pass, one after the other, and so
    // do they after a stream restart.
    let fine = stanza(100, 60);
    let input = format!("{HEADER}{fine}{fine}");
    let (events, err) = check_splits_with(input.as_bytes(), &limits);
    assert_eq!((events.len(), err), (3, None));
    assert_eq!(stanzas(&events)[1].children().count(), 60);
    let mut p = StreamParser::new(limits.clone());
    p.feed(format!("{input}{input}").as_bytes());
    for _ in 0..3 {
        assert!(matches!(p.next_event(), Ok(Some(_))));
    }
    p.reset();
    for _ in 0..3 {
        assert!(matches!(p.next_event(), Ok(Some(_))));
    }
    assert!(parse_document(fine.as_bytes(), ns::CLIENT, &limits).is_ok());

    // The same through prefixed attributes: each element using the prefix carries a copy of
    // its declaration, which counts as well.
    let via_attrs = format!(
        "<iq xmlns:p='{}'>{}</iq>",
        "u".repeat(1000),
        "<a p:x=''/>".repeat(30)
    );
    assert!(via_attrs.len() < 2_000);
    let (events, err) = check_splits_with(format!("{HEADER}{via_attrs}").as_bytes(), &limits);
    assert_eq!((events.len(), err), (1, Some(size.clone())));
    assert_eq!(
        parse_document(via_attrs.as_bytes(), ns::CLIENT, &limits),
        Err(size.clone())
    );

    // The original report's shape under the default limits: a 64 KB namespace is refused
    // outright, and at the largest allowed one the stanza fails within a few hundred children,
    // long before its end.
    let mut p = StreamParser::new(Limits::default());
    p.feed(HEADER.as_bytes());
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open { .. }))));
    p.feed(format!("<iq xmlns='{}'>", "u".repeat(64 * 1024)).as_bytes());
    assert_eq!(
        p.next_event(),
        Err(XmlError::LimitExceeded("namespace length"))
    );
    let mut p = StreamParser::new(Limits::default());
    p.feed(HEADER.as_bytes());
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open { .. }))));
    p.feed(format!("<iq xmlns='{}'>", "u".repeat(1024)).as_bytes());
    assert_eq!(p.next_event(), Ok(None));
    let mut kids = 0;
    let err = loop {
        p.feed(b"<a/>");
        kids += 1;
        match p.next_event() {
            Ok(None) => assert!(kids < 40_000),
            other => break other,
        }
    };
    assert_eq!(err, Err(size));
    assert!(kids <= 256, "failed only after {kids} children");
}

#[test]
fn normal_stanzas_fit_the_default_limit() {
    let limits = Limits::default();
    let mut roster = String::from("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'>");
    for i in 0..500 {
        roster.push_str(&format!(
            "<item jid='contact{i}@example.com' name='Contact number {i}' subscription='both'>\
             <group>Friends</group></item>"
        ));
    }
    roster.push_str("</query></iq>");
    let body = format!(
        "<message to='a@example.com' type='chat'><body>{}</body></message>",
        "x".repeat(200 * 1024)
    );
    // The default namespace comes from the stream; jabber:client costs nothing per element.
    let xhtml = format!(
        "<message><html xmlns='http://jabber.org/protocol/xhtml-im'>\
         <body xmlns='http://www.w3.org/1999/xhtml'>{}</body></html></message>",
        "<p>line<br/>next</p>".repeat(2_000)
    );
    for stanza in [&roster, &body, &xhtml] {
        let (events, err) = run(format!("{HEADER}{stanza}{stanza}").as_bytes());
        assert_eq!((events.len(), err), (3, None));
        let parsed = parse_document(stanza.as_bytes(), ns::CLIENT, &limits).unwrap();
        assert_eq!(stanzas(&events)[0], &parsed);
    }
    let (events, _) = run(format!("{HEADER}{roster}").as_bytes());
    let query = stanzas(&events)[0].first_child().unwrap();
    assert_eq!(query.children().count(), 500);
    assert!(query.children().all(|i| i.is("item", "jabber:iq:roster")));
}
