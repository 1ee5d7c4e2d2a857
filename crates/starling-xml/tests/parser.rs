//! Behaviour of the stream parser and `parse_document` on raw bytes: RFC 6120 §4 (streams),
//! §11 (XML restrictions, namespaces), RFC 7395 (WebSocket frames), and the resource limits.
#![allow(clippy::unwrap_used)]

use starling_xml::{
    ns, parse_document, Element, Limits, Node, StreamEvent, StreamParser, XmlError,
};

type Outcome = (Vec<StreamEvent>, Option<XmlError>);

const HEADER: &str = "<?xml version='1.0'?><stream:stream to='im.example.com' version='1.0' \
     xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Feeds `chunks` in order, draining events after each, until the first error.
fn run_chunks(chunks: &[&[u8]], limits: &Limits) -> Outcome {
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

fn run(input: &[u8]) -> Outcome {
    run_chunks(&[input], &Limits::default())
}

/// Tiny deterministic PRNG for chunk sizes (no dependencies).
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

/// Every split of `input` gives the same outcome as feeding it whole: at each single split
/// point, one byte at a time, and a few random chunkings. Returns that outcome.
fn check_splits_with(input: &[u8], limits: &Limits) -> Outcome {
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

fn check_splits(input: &str) -> Outcome {
    check_splits_with(input.as_bytes(), &Limits::default())
}

fn stanzas(events: &[StreamEvent]) -> Vec<&Element> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Stanza(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The error of a stream made of the standard header followed by `body`.
fn error_after_header(body: &str) -> XmlError {
    let (_, err) = check_splits(&format!("{HEADER}{body}"));
    err.unwrap_or_else(|| panic!("no error for {body}"))
}

fn nwf(e: &XmlError) -> bool {
    matches!(e, XmlError::NotWellFormed(_))
}

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
fn namespace_resolution() {
    let input = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
        xmlns:x='urn:x'><message><x:data a='1' x:b='2' xml:lang='fr'><inner/><y xmlns='urn:y'><z/></y>\
        <x:more xmlns:x='urn:x2'/><x:again/></x:data></message><foo:bar xmlns:foo='urn:foo'><baz/></foo:bar>\
        <presence xmlns=''><status/></presence><stream:features/></stream:stream>";
    let (events, err) = check_splits(input);
    assert_eq!(err, None);
    let s = stanzas(&events);
    assert_eq!(s.len(), 4);
    let message = s[0];
    assert!(
        message.is("message", ns::CLIENT),
        "the root's default namespace is inherited"
    );
    let data = message.first_child().unwrap();
    assert!(
        data.is("data", "urn:x"),
        "a prefix declared on the root is in scope"
    );
    assert_eq!(
        data.attrs().collect::<Vec<_>>(),
        vec![
            ("a", "1"),
            ("xmlns:x", "urn:x"),
            ("x:b", "2"),
            ("xml:lang", "fr")
        ],
        "a prefixed attribute brings its prefix's declaration along (not xml:)"
    );
    let kids: Vec<_> = data.children().collect();
    assert!(
        kids[0].is("inner", ns::CLIENT),
        "a prefixed parent does not change the default"
    );
    assert!(kids[1].is("y", "urn:y"));
    assert!(
        kids[1].first_child().unwrap().is("z", "urn:y"),
        "a redeclared default is inherited"
    );
    assert!(
        kids[2].is("more", "urn:x2"),
        "a prefix redeclared in a child"
    );
    assert!(
        kids[3].is("again", "urn:x"),
        "the redeclaration went out of scope"
    );
    assert!(s[1].is("bar", "urn:foo"));
    assert!(s[1].first_child().unwrap().is("baz", ns::CLIENT));
    assert!(s[2].is("presence", ""), "xmlns='' undeclares the default");
    assert!(s[2].first_child().unwrap().is("status", ""));
    assert!(s[3].is("features", ns::STREAM));
}

#[test]
fn namespace_errors() {
    for body in [
        "<foo:bar/>",
        "<message q:b='1'/>",
        "<message xmlns:p=''/>",
        "<message xmlns:xml='urn:not-xml'/>",
        "<message xmlns:xmlns='urn:x'/>",
        "<xmlns:message/>",
        "<a:b:c/>",
        // The prefix declared on a sibling is out of scope.
        "<a xmlns:p='urn:p'/><p:b/>",
    ] {
        let e = error_after_header(body);
        assert!(nwf(&e), "{body}: {e:?}");
    }
    // No stream: prefix declared at all.
    let (_, e) = check_splits("<stream:stream xmlns='jabber:client'>");
    assert!(nwf(&e.unwrap()));
}

#[test]
fn entities_and_character_references() {
    let input = format!(
        "{HEADER}<message to='a&amp;b&#x40;c' id='&quot;&apos;&lt;&gt;'><body>a &amp; b &lt;&gt; \
         &quot;&apos; &#65;&#x42;&#0067; &#x10FFFF;</body></message>"
    );
    let (events, err) = check_splits(&input);
    assert_eq!(err, None);
    let m = stanzas(&events)[0];
    assert_eq!(m.attr("to"), Some("a&b@c"));
    assert_eq!(m.attr("id"), Some("\"'<>"));
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("a & b <> \"' ABC \u{10FFFF}")
    );

    // Quotes of the other kind, `>` and `/` inside values do not end the tag.
    let (events, err) = check_splits(&format!(
        "{HEADER}<message id=\"it's\" x='say \"hi\"' y='a>b]]>/'/>"
    ));
    assert_eq!(err, None);
    let m = stanzas(&events)[0];
    assert_eq!(
        m.attrs().collect::<Vec<_>>(),
        vec![("id", "it's"), ("x", "say \"hi\""), ("y", "a>b]]>/")]
    );

    for body in [
        "<message><body>&nbsp;</body></message>",
        "<message><body>&amp</body></message>",
        "<message><body>&#0;</body></message>",
        "<message><body>&#1;</body></message>",
        "<message><body>&#xD800;</body></message>",
        "<message><body>&#x110000;</body></message>",
        "<message><body>&#xFFFE;</body></message>",
        "<message><body>a & b</body></message>",
        "<message id='&foo;'/>",
        "<message id='a&b'/>",
    ] {
        let e = error_after_header(body);
        assert!(nwf(&e), "{body}: {e:?}");
    }
}

#[test]
fn cdata_sections_are_text() {
    let input = format!(
        "{HEADER}<message><body>x <![CDATA[<not a tag> & ]] ]]]]><![CDATA[> ]]>y</body></message>"
    );
    let (events, err) = check_splits(&input);
    assert_eq!(err, None);
    let body = stanzas(&events)[0].first_child().unwrap();
    assert_eq!(
        body.nodes(),
        &[Node::Text("x <not a tag> & ]] ]]> y".into())]
    );
    // Not between stanzas, and `]]>` is not allowed in plain text.
    assert!(nwf(&error_after_header("<![CDATA[x]]>")));
    assert!(nwf(&error_after_header(
        "<message><body>a]]>b</body></message>"
    )));
}

#[test]
fn restricted_xml_is_rejected() {
    let restricted = |input: &str| {
        let (_, e) = check_splits(input);
        match e {
            Some(XmlError::Restricted(_)) => {}
            other => panic!("{input}: expected Restricted, got {other:?}"),
        }
    };
    restricted("<!DOCTYPE stream><stream:stream>");
    restricted("<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]><stream:stream>");
    restricted("<!ENTITY x 'y'>");
    restricted("<?xml-stylesheet href='a'?><stream:stream>");
    restricted(" <?xml version='1.0'?><stream:stream>");
    restricted("<!-- hi --><stream:stream>");
    restricted(&format!("{HEADER}<!-- keepalive? -->"));
    restricted(&format!("{HEADER}<message><!-- x --></message>"));
    restricted(&format!("{HEADER}<message><?php echo 1 ?></message>"));
    restricted(&format!("{HEADER}<?xml version='1.0'?>"));
    restricted(&format!("{HEADER}<message><![INCLUDE[x]]></message>"));
    restricted(&format!("{HEADER}<!ATTLIST a b CDATA #IMPLIED>"));
    // An undefined entity is a well-formedness error (no DTD can define it).
    assert!(nwf(&error_after_header(
        "<message><body>&xxe;</body></message>"
    )));
}

#[test]
fn xml_declaration_variants() {
    for decl in [
        "",
        "<?xml version='1.0'?>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone='yes' ?>",
        "\u{FEFF}<?xml version='1.0'?>",
        "\u{FEFF}",
    ] {
        let (events, err) = check_splits(&format!(
            "{decl}\n<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>"
        ));
        assert_eq!(err, None, "{decl}");
        assert_eq!(events.len(), 2, "a self-closing root gives Open then Close");
        assert_eq!(events[1], StreamEvent::Close);
    }
    for decl in [
        "<?xml encoding='UTF-8'?>",
        "<?xml version='1.0' encoding='ISO-8859-1'?>",
        "<?xml version='1.0' encoding='UTF-16'?>",
        "<?xml version='1.0' standalone='yes' encoding='UTF-8'?>",
        "<?xml?>",
    ] {
        let (_, err) = check_splits(&format!("{decl}<stream:stream xmlns='jabber:client'>"));
        assert!(nwf(&err.expect(decl)), "{decl}");
    }
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
fn mismatched_and_malformed_tags() {
    for body in [
        "<message><body></message>",
        "<message></body>",
        "<message></stream:stream>",
        "</stream>",
        "<message to='a' to='b'/>",
        "<message xmlns='a' xmlns='b'/>",
        "<message to=a/>",
        "<message to='a'id='b'/>",
        "<message to/>",
        "<message <body/>",
        "<message to='<'/>",
        "< message/>",
        "<1message/>",
        "<message / >",
    ] {
        let e = error_after_header(body);
        assert!(nwf(&e), "{body}: {e:?}");
    }
    let (_, e) = check_splits("</stream:stream>");
    assert!(nwf(&e.unwrap()));
    let (_, e) = check_splits("hello");
    assert!(nwf(&e.unwrap()));
    // White space before `>` in an end tag is fine.
    let (events, err) = check_splits(&format!(
        "{HEADER}<message ><body >x</body \n></message\t></stream:stream >"
    ));
    assert_eq!(err, None);
    assert_eq!(events.len(), 3);
}

#[test]
fn invalid_utf8_and_characters() {
    for bad in [
        &b"<message><body>\xFF</body></message>"[..],
        b"<message><body>\xC3</body></message>",
        b"<message><body>\xC0\x80</body></message>",
        b"<message><body>\xED\xA0\x80</body></message>",
        b"<message to='\xE9'/>",
        b"<m\xE9ssage/>",
        b"<message><body>a\x01b</body></message>",
        b"<message><body>\x1b[31m</body></message>",
        b"<message to='\x00'/>",
        b"<message><body>\xEF\xBF\xBF</body></message>",
        b"<message><body><![CDATA[\x08]]></body></message>",
    ] {
        let mut input = HEADER.as_bytes().to_vec();
        input.extend_from_slice(bad);
        let (_, e) = check_splits_with(&input, &Limits::default());
        let e = e.expect("an error");
        assert!(nwf(&e), "{}: {e:?}", String::from_utf8_lossy(bad));
    }
    // Multi-byte characters split anywhere are reassembled (check_splits covers every split).
    let (events, err) = check_splits(&format!(
        "{HEADER}<message to='\u{1F600}\u{e9}'><body>\u{4E2D}\u{1F600}</body></message>"
    ));
    assert_eq!(err, None);
    let m = stanzas(&events)[0];
    assert_eq!(m.attr("to"), Some("\u{1F600}\u{e9}"));
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("\u{4E2D}\u{1F600}")
    );
}

#[test]
fn line_ends_and_attribute_white_space_are_normalized() {
    let (events, err) = check_splits(&format!(
        "{HEADER}<message id='a\r\nb\tc'><body>x\r\ny\rz&#13;</body></message>"
    ));
    assert_eq!(err, None);
    let m = stanzas(&events)[0];
    assert_eq!(m.attr("id"), Some("a b c"));
    assert_eq!(
        m.child_text("body", ns::CLIENT).as_deref(),
        Some("x\ny\nz\r")
    );
}

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
fn round_trip_through_the_serializer() {
    let input = format!(
        "{HEADER}<message to='r@e.net/x' type='chat' xml:lang='en'><body>a &amp; b &lt; c &gt; 'q' \"d\" \u{1F600}</body>\
         <html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>\
         <p style='a:b'>x<br/>y</p></body></html><x xmlns:p='urn:p'><p:y a='&apos;&quot;'/></x></message>\
         <iq type='result' id='r'><query xmlns='jabber:iq:roster'><item jid='a@b' name='A &amp; B'>\
         <group>G</group></item></query></iq>\
         <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
    );
    let (events, err) = check_splits(&input);
    assert_eq!(err, None);
    let s = stanzas(&events);
    assert_eq!(s.len(), 3);
    for el in s {
        let xml = el.to_xml();
        let again = parse_document(xml.as_bytes(), "", &Limits::default()).expect(&xml);
        assert_eq!(&again, el, "{xml}");
        // And as stanza bytes inside a stream.
        let mut wrapped = String::from(HEADER);
        el.write_to(&mut wrapped, ns::CLIENT);
        let (evs, err) = run(wrapped.as_bytes());
        assert_eq!(err, None);
        assert_eq!(stanzas(&evs), vec![el]);
    }
}

#[test]
fn websocket_frames() {
    let limits = Limits::default();
    let open = parse_document(
        b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
        ns::CLIENT,
        &limits,
    )
    .unwrap();
    assert_eq!(
        open,
        Element::new("open", ns::FRAMING)
            .with_attr("to", "localhost")
            .with_attr("version", "1.0")
    );
    let msg = parse_document(
        b"\n<message to='a@b' type='chat'><body>hi &amp; bye</body></message>\r\n ",
        ns::CLIENT,
        &limits,
    )
    .unwrap();
    assert!(msg.is("message", ns::CLIENT));
    assert_eq!(
        msg.child_text("body", ns::CLIENT).as_deref(),
        Some("hi & bye")
    );
    let explicit =
        parse_document(b"<message xmlns='jabber:server'/>", ns::CLIENT, &limits).unwrap();
    assert!(explicit.is("message", ns::SERVER));
    let features = parse_document(
        b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
        ns::CLIENT,
        &limits,
    )
    .unwrap();
    assert!(features.is("features", ns::STREAM));
    let with_decl = parse_document(
        b"<?xml version='1.0'?><close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
        ns::CLIENT,
        &limits,
    )
    .unwrap();
    assert!(with_decl.is("close", ns::FRAMING));

    for bad in [
        &b""[..],
        b"   ",
        b"<message>",
        b"<message/",
        b"<message/><message/>",
        b"<message/>trailing",
        b"<message></message>&amp;",
        b"<message><body>hi</body>",
        b"<message/>\xC3",
        b"</message>",
        b"<stream:features/>",
    ] {
        let e = parse_document(bad, ns::CLIENT, &limits).unwrap_err();
        assert!(nwf(&e), "{}: {e:?}", String::from_utf8_lossy(bad));
    }
    for bad in [
        &b"<!-- x --><message/>"[..],
        b"<message/><!-- x -->",
        b"<!DOCTYPE message><message/>",
        b"<message><?pi?></message>",
    ] {
        let e = parse_document(bad, ns::CLIENT, &limits).unwrap_err();
        assert!(
            matches!(e, XmlError::Restricted(_)),
            "{}: {e:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let small = Limits {
        max_stanza_bytes: 20,
        ..Limits::default()
    };
    assert!(matches!(
        parse_document(
            b"<message><body>1234567890</body></message>",
            ns::CLIENT,
            &small
        ),
        Err(XmlError::LimitExceeded(_))
    ));
    let shallow = Limits {
        max_depth: 1,
        ..Limits::default()
    };
    assert!(parse_document(b"<message/>", ns::CLIENT, &shallow).is_ok());
    assert!(matches!(
        parse_document(b"<message><body/></message>", ns::CLIENT, &shallow),
        Err(XmlError::LimitExceeded(_))
    ));
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

#[test]
fn whitespace_in_attributes_and_cr_in_text_survive_a_round_trip() {
    let el = starling_xml::Element::new("message", "jabber:client")
        .with_attr("id", "a\tb\nc\rd")
        .with_text("line1\r\nline2");
    let xml = el.to_xml();
    let back = starling_xml::parse_document(xml.as_bytes(), "jabber:client", &Default::default())
        .expect("parses");
    assert_eq!(back, el);
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

/// Parses `stanza` inside a stream and alone, checks both agree, and that serializing it and
/// parsing the output (alone, and inside a stream) gives it back.
fn parse_and_round_trip(header: &str, stanza: &str) -> Element {
    let (events, err) = check_splits(&format!("{header}{stanza}"));
    assert_eq!(err, None);
    let s = stanzas(&events);
    assert_eq!(s.len(), 1);
    let el = s[0].clone();
    if header == HEADER {
        let doc = parse_document(stanza.as_bytes(), ns::CLIENT, &Limits::default()).unwrap();
        assert_eq!(doc, el, "parse_document agrees with the stream parser");
    }
    let xml = el.to_xml();
    let again = parse_document(xml.as_bytes(), "", &Limits::default())
        .unwrap_or_else(|e| panic!("{xml} is not well-formed: {e}"));
    assert_eq!(again, el, "{xml}");
    let mut wrapped = String::from(HEADER);
    el.write_to(&mut wrapped, ns::CLIENT);
    let (evs, err) = run(wrapped.as_bytes());
    assert_eq!(err, None, "{wrapped}");
    assert_eq!(stanzas(&evs), vec![&el]);
    el
}

#[test]
fn prefixed_attributes_keep_their_declaration() {
    let message = parse_and_round_trip(
        HEADER,
        "<message to='a@b'><x xmlns='urn:x' xmlns:p='urn:p' p:attr='1'/></message>",
    );
    let x = message.first_child().unwrap();
    assert!(x.is("x", "urn:x"));
    assert_eq!(
        x.attrs().collect::<Vec<_>>(),
        vec![("xmlns:p", "urn:p"), ("p:attr", "1")]
    );
    assert_eq!(x.to_xml(), "<x xmlns='urn:x' xmlns:p='urn:p' p:attr='1'/>");
    assert_eq!(
        parse_document(x.to_xml().as_bytes(), "", &Limits::default()).as_ref(),
        Ok(x)
    );
    assert_eq!(message.attrs().collect::<Vec<_>>(), vec![("to", "a@b")]);

    // The element's own prefix, the reserved xml prefix and other attributes are untouched.
    let m = parse_and_round_trip(
        HEADER,
        "<message xml:lang='en'><p:x xmlns:p='urn:p' a='0' p:b='1' p:c='2'/></message>",
    );
    assert_eq!(m.attrs().collect::<Vec<_>>(), vec![("xml:lang", "en")]);
    let x = m.first_child().unwrap();
    assert!(x.is("x", "urn:p"));
    assert_eq!(
        x.attrs().collect::<Vec<_>>(),
        vec![("a", "0"), ("xmlns:p", "urn:p"), ("p:b", "1"), ("p:c", "2")],
        "one declaration per prefix, before its first use"
    );
}

#[test]
fn prefix_declared_on_an_ancestor_is_carried_to_its_user() {
    let m = parse_and_round_trip(
        HEADER,
        "<message xmlns:p='urn:p' xmlns:q='urn:q&amp;'><x xmlns='urn:x' p:attr='1'>\
         <y q:a='2' p:b='3'/><z xmlns:p='urn:p2' p:c='4'/><w/></x></message>",
    );
    assert_eq!(m.attrs().count(), 0, "a declaration nobody uses is dropped");
    let x = m.first_child().unwrap();
    assert_eq!(
        x.attrs().collect::<Vec<_>>(),
        vec![("xmlns:p", "urn:p"), ("p:attr", "1")]
    );
    let kids: Vec<_> = x.children().collect();
    assert_eq!(
        kids[0].attrs().collect::<Vec<_>>(),
        vec![
            ("xmlns:q", "urn:q&"),
            ("q:a", "2"),
            ("xmlns:p", "urn:p"),
            ("p:b", "3")
        ]
    );
    assert_eq!(
        kids[1].attrs().collect::<Vec<_>>(),
        vec![("xmlns:p", "urn:p2"), ("p:c", "4")],
        "the innermost declaration wins"
    );
    assert_eq!(kids[2].attrs().count(), 0);
    // Standalone, the child declares what it uses.
    assert_eq!(
        kids[0].to_xml(),
        "<y xmlns='urn:x' xmlns:q='urn:q&amp;' q:a='2' xmlns:p='urn:p' p:b='3'/>"
    );

    // Declared on the stream root.
    let header = format!(
        "<stream:stream xmlns='jabber:client' xmlns:stream='{}' xmlns:p='urn:p'>",
        ns::STREAM
    );
    let m = parse_and_round_trip(
        &header,
        "<message p:a='1'><body p:b='2'>hi</body></message>",
    );
    assert_eq!(
        m.attrs().collect::<Vec<_>>(),
        vec![("xmlns:p", "urn:p"), ("p:a", "1")]
    );
    assert_eq!(
        m.first_child().unwrap().attrs().collect::<Vec<_>>(),
        vec![("xmlns:p", "urn:p"), ("p:b", "2")]
    );
    // And via parse_document, where the declaration is on the frame's root.
    let doc = parse_document(
        b"<message xmlns='jabber:client' xmlns:p='urn:p'><x p:a='1'/></message>",
        ns::CLIENT,
        &Limits::default(),
    )
    .unwrap();
    let x = doc.first_child().unwrap();
    assert_eq!(
        x.to_xml(),
        "<x xmlns='jabber:client' xmlns:p='urn:p' p:a='1'/>"
    );
    assert_eq!(
        parse_document(x.to_xml().as_bytes(), "", &Limits::default()).as_ref(),
        Ok(x)
    );
}
