//! Stream negotiation on an [`XmppClient`]: STARTTLS (RFC 6120 §5), SASL (RFC 6120 §6),
//! resource binding (RFC 6120 §7), and the whole login built from them.

use starling_xml::Element;
use tokio_rustls::TlsConnector;

use super::client::{parser, Io, XmppClient, TIMEOUT};
use super::sasl::{b64, plain_message, unb64, Cb, Mech, ScramClient};
use super::tls;
use super::{NS_BIND, NS_SASL, NS_TLS};

/// Options for a SASL exchange that deliberately deviates (downgrade and binding tests).
#[derive(Clone, Debug, Default)]
pub struct SaslOptions {
    /// Replaces the GS2 header ("n,,", "y,,", "p=…,,").
    pub gs2_header: Option<String>,
    /// Replaces the channel-binding data.
    pub cb_data: Option<Vec<u8>>,
}

impl XmppClient {
    /// Sends `<starttls/>`, expects `<proceed/>` and does the TLS handshake (RFC 6120 §5.4).
    pub async fn starttls(&mut self) {
        self.send_raw(&format!("<starttls xmlns='{NS_TLS}'/>"))
            .await;
        self.complete_starttls().await;
    }

    /// The rest of STARTTLS once `<starttls/>` went out: `<proceed/>`, then the handshake.
    pub async fn complete_starttls(&mut self) {
        self.expect("proceed", NS_TLS).await;
        let Io::Plain(s) = std::mem::replace(&mut self.io, Io::Gone) else {
            self.fail("STARTTLS on a connection that is not plain TCP");
        };
        let connector = TlsConnector::from(tls::client_config(&[]));
        let host = self.host.clone();
        let t = match tokio::time::timeout(TIMEOUT, connector.connect(tls::server_name(&host), s))
            .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => self.fail(&format!("TLS handshake after <proceed/> failed: {e}")),
            Err(_) => self.fail("TLS handshake after <proceed/> timed out"),
        };
        self.io = Io::Tls(Box::new(t));
        self.parser = parser();
        self.record_tls();
        self.note("TLS established (STARTTLS)");
    }

    /// Opens the stream and gets it to the point where SASL can start: STARTTLS on plain
    /// TCP, nothing more on Direct TLS and WebSocket. Returns the features.
    pub async fn negotiate_tls(&mut self) -> Element {
        let features = self.open_stream().await;
        if matches!(self.io, Io::Plain(_)) {
            if !features.has_child("starttls", NS_TLS) {
                self.fail("no STARTTLS offered on plain TCP");
            }
            self.starttls().await;
            return self.open_stream().await;
        }
        features
    }

    /// The mechanism names in the last features.
    pub fn mechanisms(&self) -> Vec<String> {
        super::mechanisms(self.features.as_ref())
    }

    /// Channel-binding data of this connection, as the client computes it.
    pub fn cb_data(&self, cb: Cb) -> Vec<u8> {
        let Some(info) = &self.tls else {
            self.fail("channel binding without TLS");
        };
        let data = match cb {
            Cb::Exporter => info.exporter.clone(),
            Cb::EndPoint => info.end_point.clone(),
        };
        data.unwrap_or_else(|| self.fail(&format!("no {} data on this connection", cb.name())))
    }

    /// Runs one SASL exchange. `Ok` after `<success/>` (with the SCRAM server signature
    /// verified), `Err(<failure/>)` otherwise.
    pub async fn authenticate(
        &mut self,
        user: &str,
        password: &str,
        mech: Mech,
    ) -> Result<(), Element> {
        self.authenticate_with(user, password, mech, SaslOptions::default())
            .await
    }

    pub async fn authenticate_with(
        &mut self,
        user: &str,
        password: &str,
        mech: Mech,
        opts: SaslOptions,
    ) -> Result<(), Element> {
        let mut scram = match mech {
            Mech::Plain => None,
            Mech::Scram(h) => {
                let gs2 = opts.gs2_header.clone().unwrap_or_else(|| "n,,".into());
                Some(ScramClient::new(
                    h,
                    user,
                    password,
                    &gs2,
                    &opts.cb_data.clone().unwrap_or_default(),
                ))
            }
            Mech::ScramPlus(h, cb) => {
                let gs2 = opts
                    .gs2_header
                    .clone()
                    .unwrap_or_else(|| format!("p={},,", cb.name()));
                let data = opts.cb_data.clone().unwrap_or_else(|| self.cb_data(cb));
                Some(ScramClient::new(h, user, password, &gs2, &data))
            }
        };
        let initial = match &scram {
            None => plain_message(user, password),
            Some(s) => s.client_first(),
        };
        self.send_raw(&format!(
            "<auth xmlns='{NS_SASL}' mechanism='{}'>{}</auth>",
            mech.name(),
            b64(&initial)
        ))
        .await;
        loop {
            let el = self.next_stanza().await;
            if el.ns() != NS_SASL {
                self.fail(&format!("expected a SASL element, got {el}"));
            }
            match el.name() {
                "challenge" => {
                    let data = unb64(&el.text()).unwrap_or_else(|e| self.fail(&e));
                    let Some(s) = scram.as_mut() else {
                        self.fail("a challenge for PLAIN");
                    };
                    let reply = s.client_final(&data).unwrap_or_else(|e| self.fail(&e));
                    self.send_raw(&format!(
                        "<response xmlns='{NS_SASL}'>{}</response>",
                        b64(&reply)
                    ))
                    .await;
                }
                "success" => {
                    if let Some(s) = &scram {
                        // RFC 6120 §6.3.10: SCRAM's server-final travels in <success/>.
                        let data = unb64(&el.text()).unwrap_or_else(|e| self.fail(&e));
                        if let Err(e) = s.verify_server_final(&data) {
                            self.fail(&format!(
                                "the server did not prove it knows the password: {e}"
                            ));
                        }
                    }
                    // RFC 6120 §6.4.6: the parser starts over with the new stream.
                    self.parser = parser();
                    return Ok(());
                }
                "failure" => return Err(el),
                _ => self.fail(&format!("unexpected SASL element {el}")),
            }
        }
    }

    /// Binds a resource (None: the server picks one). `Ok(full JID)` or `Err(error IQ)`.
    pub async fn bind(&mut self, resource: Option<&str>) -> Result<String, Element> {
        let id = self.id("bind-");
        let inner = match resource {
            Some(r) => {
                let mut s = String::new();
                starling_xml::escape_text(r, &mut s);
                format!("<resource>{s}</resource>")
            }
            None => String::new(),
        };
        let xml = format!("<iq type='set' id='{id}'><bind xmlns='{NS_BIND}'>{inner}</bind></iq>");
        self.send_stanza(&xml).await;
        let el = self.next_stanza().await;
        if el.name() != "iq" || el.attr("id") != Some(id.as_str()) {
            self.fail(&format!(
                "expected the answer to the bind request, got {el}"
            ));
        }
        if el.attr("type") != Some("result") {
            return Err(el);
        }
        let jid = el
            .get_child("bind", NS_BIND)
            .and_then(|b| b.child_text("jid", NS_BIND))
            .unwrap_or_else(|| self.fail(&format!("bind result without <jid/>: {el}")));
        self.jid = Some(jid.clone());
        Ok(jid)
    }

    /// From a fresh connection to a bound resource: stream, STARTTLS where needed, SASL with
    /// `mech` (which must be offered), restart, bind. Returns the full JID.
    pub async fn login(
        &mut self,
        user: &str,
        password: &str,
        resource: Option<&str>,
        mech: Mech,
    ) -> String {
        self.negotiate_tls().await;
        let offered = self.mechanisms();
        if !offered.iter().any(|m| m == mech.name()) {
            self.fail(&format!(
                "{} is not offered; offered: {offered:?}",
                mech.name()
            ));
        }
        if let Err(f) = self.authenticate(user, password, mech).await {
            self.fail(&format!(
                "authentication as {user} with {} failed: {f}",
                mech.name()
            ));
        }
        let features = self.open_stream().await;
        if !features.has_child("bind", NS_BIND) {
            self.fail("no <bind/> offered after authentication");
        }
        match self.bind(resource).await {
            Ok(jid) => jid,
            Err(e) => self.fail(&format!("bind failed: {e}")),
        }
    }

    /// [`Self::login`], then initial presence (RFC 6121 §4.2) so the session is available.
    pub async fn login_available(
        &mut self,
        user: &str,
        password: &str,
        resource: Option<&str>,
        mech: Mech,
    ) -> String {
        let jid = self.login(user, password, resource, mech).await;
        self.send_stanza("<presence/>").await;
        jid
    }

    /// The bare JID of the bound session.
    pub fn bare(&self) -> String {
        let jid = self
            .jid
            .as_deref()
            .unwrap_or_else(|| self.fail("not bound"));
        jid.split('/').next().unwrap_or(jid).to_owned()
    }

    pub fn full(&self) -> String {
        self.jid.clone().unwrap_or_else(|| self.fail("not bound"))
    }
}
