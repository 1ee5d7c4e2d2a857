//! `parse_document` (one element per RFC 7395 WebSocket frame) and round trips through the
//! serializer.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use starling_xml::{ns, parse_document, Element, Limits, XmlError};

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
fn whitespace_in_attributes_and_cr_in_text_survive_a_round_trip() {
    let el = starling_xml::Element::new("message", "jabber:client")
        .with_attr("id", "a\tb\nc\rd")
        .with_text("line1\r\nline2");
    let xml = el.to_xml();
    let back = starling_xml::parse_document(xml.as_bytes(), "jabber:client", &Default::default())
        .expect("parses");
    assert_eq!(back, el);
}
