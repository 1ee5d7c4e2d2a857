//! Throughput of the stream parser on typical message stanzas (the XMPP hot path), without a
//! benchmark framework: `cargo bench -p starling-xml` prints ns per stanza.

use std::hint::black_box;
use std::time::Instant;

use starling_xml::{parse_document, Limits, StreamEvent, StreamParser};

const HEADER: &str = "<?xml version='1.0'?><stream:stream to='example.com' version='1.0' \
     xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// About 300 bytes: addressing, a body with an entity, a chat state and a receipt request.
const MESSAGE: &str = "<message from='juliet@example.com/balcony' to='romeo@example.net' \
     type='chat' id='ktx72v49' xml:lang='en'><body>Art thou not Romeo, and a Montague? \
     Neither, fair saint, if either thee dislike &amp; so on.</body>\
     <active xmlns='http://jabber.org/protocol/chatstates'/>\
     <request xmlns='urn:xmpp:receipts'/></message>";

fn main() {
    let n = 200_000;
    let mut input = String::from(HEADER);
    for _ in 0..n {
        input.push_str(MESSAGE);
        input.push('\n');
    }
    let bytes = input.as_bytes();
    println!("message stanza: {} bytes", MESSAGE.len());

    for chunk in [4096, 64] {
        let start = Instant::now();
        let mut p = StreamParser::new(Limits::default());
        let mut count = 0;
        for c in bytes.chunks(chunk) {
            p.feed(c);
            while let Some(ev) = p.next_event().expect("valid stream") {
                if let StreamEvent::Stanza(s) = ev {
                    black_box(&s);
                    count += 1;
                }
            }
        }
        assert_eq!(count, n);
        let per = start.elapsed().as_nanos() as f64 / n as f64;
        let mbps = bytes.len() as f64 / start.elapsed().as_secs_f64() / 1e6;
        println!("stream, {chunk}-byte reads: {per:.0} ns/stanza, {mbps:.0} MB/s");
    }

    let limits = Limits::default();
    let start = Instant::now();
    for _ in 0..n {
        black_box(
            parse_document(black_box(MESSAGE.as_bytes()), "jabber:client", &limits).expect("valid"),
        );
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    println!("parse_document: {per:.0} ns/stanza");
}
