//! In-process test support: a server on an in-memory store and clients bound straight into
//! the session registry, for module tests that need no sockets. Protocol tests over real
//! sockets live in the `starling` crate.

use std::sync::Arc;
use std::time::Duration;

use starling_proto::sasl::StoredCredentials;
use starling_proto::{Jid, StreamError};
use starling_xml::Element;

use crate::hooks::{Module, SessionEvent};
use crate::registry::{NewSession, SessionInfo, SessionReceiver};
use crate::{Config, Server};

/// A server with these modules on a fresh in-memory store (host `localhost` unless the
/// config says otherwise).
pub async fn server(config: Config, modules: Vec<Arc<dyn Module>>) -> Arc<Server> {
    let store = starling_store::open("sqlite::memory:")
        .await
        .expect("in-memory store");
    Server::build(config, store, modules)
}

/// Creates `user@host` with this password (cheap SCRAM iterations: tests only).
pub async fn create_account(server: &Server, jid: &str, password: &str) {
    let jid = Jid::parse(jid).expect("valid test JID");
    server
        .store
        .create_account(
            jid.domain(),
            jid.node().expect("account JID has a localpart"),
            &StoredCredentials::from_password(password, 64),
        )
        .await
        .expect("create account");
}

/// A bound session driven by the test.
pub struct TestClient {
    pub server: Arc<Server>,
    pub session: Arc<SessionInfo>,
    rx: SessionReceiver,
}

impl TestClient {
    /// Binds `full_jid` as if a stream had authenticated and bound it.
    pub async fn connect(server: &Arc<Server>, full_jid: &str) -> TestClient {
        let jid = Jid::parse(full_jid).expect("valid full JID");
        let (session, rx, replaced) = server.sessions.bind(NewSession {
            jid,
            transport: "test",
            peer: None,
            secure: true,
            queue: 1024,
            queue_bytes: 16 << 20,
        });
        if let Some(old) = replaced {
            old.close(StreamError::new(
                starling_proto::StreamErrorCondition::Conflict,
            ));
        }
        server
            .hooks
            .fire_session(SessionEvent::Bound, server, &session)
            .await;
        TestClient {
            server: server.clone(),
            session,
            rx,
        }
    }

    /// Sends a stanza as the client would (parsed from XML written with jabber:client as
    /// the default namespace).
    pub async fn send(&self, stanza: Element) -> Result<(), StreamError> {
        self.server.accept_from_session(&self.session, stanza).await
    }

    /// The next stanza for this client; panics after two seconds of silence.
    pub async fn recv(&mut self) -> Element {
        self.recv_within(Duration::from_secs(2))
            .await
            .unwrap_or_else(|| panic!("{}: no stanza arrived within 2 s", self.session.jid))
    }

    pub async fn recv_within(&mut self, wait: Duration) -> Option<Element> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Asserts that nothing arrives for a short while.
    pub async fn expect_silence(&mut self) {
        if let Some(el) = self.recv_within(Duration::from_millis(200)).await {
            panic!("{}: expected nothing, got {el}", self.session.jid);
        }
    }

    /// Ends the session as a closed connection would.
    pub async fn disconnect(self) {
        self.server.sessions.unbind(&self.session);
        self.server
            .hooks
            .fire_session(SessionEvent::Closed, &self.server, &self.session)
            .await;
    }
}
