//! Namespaces (RFC 6120 §11.2, Namespaces in XML 1.0): resolution, errors, and prefixed
//! attributes keeping the declarations they need.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use starling_xml::{ns, parse_document, Element, Limits};

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
