//! The restricted XML profile of RFC 6120 §11.1 and XML 1.0 well-formedness: references,
//! CDATA, forbidden markup, the XML declaration, malformed tags, characters and normalization.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use starling_xml::{ns, Limits, Node, StreamEvent, XmlError};

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
