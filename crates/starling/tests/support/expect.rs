//! Expectations on what the server sends: stream headers, features, stream errors and the
//! end of the stream, waiting for particular elements (answering roster pushes on the way),
//! IQ round trips and barriers.

use starling_xml::{ns, Element, StreamEvent};

use super::client::{XmppClient, TIMEOUT};
use super::{NS_ROSTER, NS_STANZAS, NS_STREAMS};

impl XmppClient {
    /// The next element must be `<name xmlns=ns>`.
    #[track_caller]
    pub fn expect<'a>(
        &'a mut self,
        name: &'a str,
        ns: &'a str,
    ) -> impl std::future::Future<Output = Element> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let el = self.next_stanza().await;
            if !el.is(name, ns) {
                self.fail(&format!(
                    "{caller}: expected <{name} xmlns='{ns}'>, got {el}"
                ));
            }
            el
        }
    }

    /// The next event must be a stream header; returns it.
    #[track_caller]
    pub fn expect_open(&mut self) -> impl std::future::Future<Output = Element> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next_event().await {
                Some(StreamEvent::Open { header, .. }) => {
                    self.header = Some(header.clone());
                    header
                }
                other => self.fail(&format!(
                    "{caller}: expected the server's stream header, got {other:?}"
                )),
            }
        }
    }

    /// `<stream:features/>`, remembered in `self.features`.
    #[track_caller]
    pub fn expect_features(&mut self) -> impl std::future::Future<Output = Element> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let el = self.next_stanza().await;
            if !el.is("features", ns::STREAM) {
                self.fail(&format!("{caller}: expected <stream:features/>, got {el}"));
            }
            self.features = Some(el.clone());
            el
        }
    }

    /// Sends our header, reads the server's header and features.
    pub async fn open_stream(&mut self) -> Element {
        self.open().await;
        self.expect_open().await;
        self.expect_features().await
    }

    /// The next element is `<stream:error>` with this condition; then the server closes the
    /// stream and the connection (RFC 6120 §4.9.1.1). Returns the error element.
    #[track_caller]
    pub fn expect_stream_error<'a>(
        &'a mut self,
        condition: &'a str,
    ) -> impl std::future::Future<Output = Element> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let el = self.next_stanza().await;
            if !el.is("error", ns::STREAM) {
                self.fail(&format!(
                    "{caller}: expected <stream:error><{condition}/>, got {el}"
                ));
            }
            if !el.has_child(condition, NS_STREAMS) {
                self.fail(&format!(
                    "{caller}: expected stream error condition <{condition}/>, got {el}"
                ));
            }
            self.expect_closed().await;
            el
        }
    }

    /// The server closes the stream (`</stream:stream>` or `<close/>`), then the connection.
    #[track_caller]
    pub fn expect_closed(&mut self) -> impl std::future::Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next_event().await {
                Some(StreamEvent::Close) => {}
                other => self.fail(&format!(
                    "{caller}: expected the server to close the stream, got {other:?}"
                )),
            }
            self.expect_eof().await;
        }
    }

    /// Nothing more: the connection ends.
    #[track_caller]
    pub fn expect_eof(&mut self) -> impl std::future::Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next_event().await {
                None => {}
                Some(other) => self.fail(&format!(
                    "{caller}: expected the connection to end, got {other:?}"
                )),
            }
        }
    }

    /// Reads elements until one satisfies `pred` (within [`TIMEOUT`] overall), answering
    /// roster pushes on the way (RFC 6121 §2.1.6). Elements skipped are in the transcript.
    #[track_caller]
    pub fn wait_for<'a, F>(
        &'a mut self,
        what: &'a str,
        pred: F,
    ) -> impl std::future::Future<Output = Element> + 'a
    where
        F: Fn(&Element) -> bool + 'a,
    {
        let caller = std::panic::Location::caller();
        async move {
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let el = match self.next_event_within(left).await {
                    Ok(Some(StreamEvent::Stanza(el))) => el,
                    Ok(other) => self.fail(&format!(
                        "{caller}: waiting for {what}, got {other:?} instead"
                    )),
                    Err(()) => self.fail(&format!(
                        "{caller}: waiting for {what}: not received within {TIMEOUT:?}"
                    )),
                };
                let matched = pred(&el);
                self.ack_roster_push(&el).await;
                if matched {
                    return el;
                }
            }
        }
    }

    /// Like [`Self::wait_for`] for several elements that may come in any order (where the
    /// RFC leaves the order open). Each element satisfies at most one predicate; returns
    /// them in the order of `wanted`.
    #[track_caller]
    pub fn wait_for_all<'a>(
        &'a mut self,
        wanted: Vec<Want<'a>>,
    ) -> impl std::future::Future<Output = Vec<Element>> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            let mut found: Vec<Option<Element>> = wanted.iter().map(|_| None).collect();
            while found.iter().any(Option::is_none) {
                let missing = || {
                    wanted
                        .iter()
                        .zip(&found)
                        .filter(|(_, f)| f.is_none())
                        .map(|(w, _)| w.what.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let el = match self.next_event_within(left).await {
                    Ok(Some(StreamEvent::Stanza(el))) => el,
                    Ok(other) => self.fail(&format!(
                        "{caller}: waiting for [{}], got {other:?} instead",
                        missing()
                    )),
                    Err(()) => self.fail(&format!(
                        "{caller}: waiting for [{}]: not received within {TIMEOUT:?}",
                        missing()
                    )),
                };
                if let Some(i) =
                    (0..wanted.len()).find(|&i| found[i].is_none() && (wanted[i].pred)(&el))
                {
                    found[i] = Some(el.clone());
                }
                self.ack_roster_push(&el).await;
            }
            found.into_iter().flatten().collect()
        }
    }

    async fn ack_roster_push(&mut self, el: &Element) {
        if el.name() == "iq" && el.attr("type") == Some("set") && el.has_child("query", NS_ROSTER) {
            if let Some(id) = el.attr("id") {
                let ack = format!("<iq type='result' id='{id}'/>");
                self.send_stanza(&ack).await;
            }
        }
    }

    /// Sends an IQ (XML text with this `id`) and returns its answer (result or error),
    /// skipping anything else that arrives meanwhile.
    #[track_caller]
    pub fn request<'a>(
        &'a mut self,
        xml: &'a str,
        id: &'a str,
    ) -> impl std::future::Future<Output = Element> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            self.send_stanza(xml).await;
            let what = format!("the answer to IQ {id} (sent at {caller})");
            self.wait_for(&what, |el| {
                el.name() == "iq"
                    && el.attr("id") == Some(id)
                    && matches!(el.attr("type"), Some("result") | Some("error"))
            })
            .await
        }
    }

    /// A round trip to the server: everything the server sent before its answer is returned,
    /// so a test can check what did or did not arrive without sleeping. Uses an IQ to the
    /// domain in a namespace nobody serves (answered with an error by the router).
    pub async fn barrier(&mut self) -> Vec<Element> {
        let id = self.id("barrier-");
        let xml = format!(
            "<iq type='get' id='{id}' to='{}'><query xmlns='urn:starling:test:barrier'/></iq>",
            self.host
        );
        self.send_stanza(&xml).await;
        let mut before = Vec::new();
        loop {
            let el = self.next_stanza().await;
            if el.name() == "iq" && el.attr("id") == Some(id.as_str()) {
                return before;
            }
            self.ack_roster_push(&el).await;
            before.push(el);
        }
    }
}

/// One element [`XmppClient::wait_for_all`] waits for.
pub struct Want<'a> {
    pub what: String,
    pub pred: Box<dyn Fn(&Element) -> bool + 'a>,
}

/// Describes an element to wait for with a predicate.
pub fn want<'a>(what: impl Into<String>, pred: impl Fn(&Element) -> bool + 'a) -> Want<'a> {
    Want {
        what: what.into(),
        pred: Box::new(pred),
    }
}

/// The stanza error condition of an error stanza (RFC 6120 §8.3.2), with its type.
pub fn stanza_error(el: &Element) -> Option<(String, String)> {
    let err = el.get_child("error", ns::CLIENT)?;
    let cond = err
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")?;
    Some((
        cond.name().to_owned(),
        err.attr("type").unwrap_or_default().to_owned(),
    ))
}
