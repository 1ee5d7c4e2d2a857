//! XEP-0077 In-Band Registration. Before authentication (§3.1, §3.1.1): the form (username and
//! password), account creation with `conflict` for a taken name and `not-acceptable` for
//! missing data, one registration per IP address per `registration.min_interval_secs`, all
//! only when `registration.enabled` (else `service-unavailable`, §3.1), with the
//! `<register xmlns='http://jabber.org/features/iq-register'/>` stream feature (§4) offered
//! only then. After authentication: `<registered/>` (§3.1), password change (§3.3, when
//! `registration.allow_password_change`), and cancellation (§3.2: the account is deleted,
//! then every session of it ends with a `<not-authorized/>` stream error).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use starling_core::{
    FeatureStage, IqHandler, IqRequest, IqResult, IqTarget, Module, PreAuthIq, PreAuthIqHandler,
    Registrar, Server,
};
use starling_proto::jid::normalize_localpart;
use starling_proto::sasl::{StoredCredentials, DEFAULT_ITERATIONS};
use starling_proto::{Jid, StanzaError, StanzaErrorCondition};
use starling_store::StoreError;
use starling_xml::Element;
use tracing::info;

use super::util::{account_key, store_error};

pub const NS_REGISTER: &str = "jabber:iq:register";
pub const NS_FEATURE: &str = "http://jabber.org/features/iq-register";
/// Longest password we hash (PBKDF2 cost grows with it only a little, but bound it anyway).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Remembered registration times beyond which old entries are pruned.
const LIMITER_PRUNE_AT: usize = 10_000;

/// The XEP-0077 module.
#[derive(Default)]
pub struct Register {
    limiter: Arc<Limiter>,
}

impl Register {
    /// The handler of registrations before authentication (for tests that drive it directly).
    pub fn pre_auth_handler(&self) -> Arc<dyn PreAuthIqHandler> {
        Arc::new(PreAuthRegister {
            limiter: self.limiter.clone(),
        })
    }
}

impl Module for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn register(self: Arc<Self>, reg: &mut Registrar) {
        reg.host_feature(NS_REGISTER);
        if reg.config().registration.enabled {
            reg.stream_feature(FeatureStage::PreAuth, Element::new("register", NS_FEATURE));
        }
        reg.pre_auth_iq(NS_REGISTER, self.pre_auth_handler());
        reg.iq_get_set(
            &[IqTarget::Host, IqTarget::OwnAccount],
            "query",
            NS_REGISTER,
            Arc::new(AccountRegister),
        );
    }
}

/// Last registration time per IP address.
#[derive(Default)]
struct Limiter {
    last: Mutex<HashMap<IpAddr, Instant>>,
}

impl Limiter {
    /// Claims the slot of `ip`; `Err(wait)` when it registered less than `interval` ago. The
    /// previous claim is returned so a failed registration can give the slot back.
    fn claim(&self, ip: IpAddr, interval: Duration) -> Result<Option<Instant>, Duration> {
        let mut map = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(t) = map.get(&ip) {
            let age = now.duration_since(*t);
            if age < interval {
                return Err(interval - age);
            }
        }
        if map.len() >= LIMITER_PRUNE_AT {
            map.retain(|_, t| now.duration_since(*t) < interval);
        }
        Ok(map.insert(ip, now))
    }

    fn release(&self, ip: IpAddr, previous: Option<Instant>) {
        let mut map = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match previous {
            Some(t) => map.insert(ip, t),
            None => map.remove(&ip),
        };
    }
}

fn err(c: StanzaErrorCondition, text: &str) -> StanzaError {
    StanzaError::new(c).with_text(text)
}

/// PBKDF2 for three hash functions takes milliseconds of CPU: keep it off the async workers.
async fn hash_password(password: String) -> Result<StoredCredentials, StanzaError> {
    tokio::task::spawn_blocking(move || {
        StoredCredentials::from_password(&password, DEFAULT_ITERATIONS)
    })
    .await
    .map_err(|_| StanzaError::new(StanzaErrorCondition::InternalServerError))
}

/// The text of a field the query must fill: absent or empty is `not-acceptable` (§3.1 note:
/// an empty value is missing data).
fn required(query: &Element, field: &str) -> Result<String, StanzaError> {
    let value = query.child_text(field, NS_REGISTER).unwrap_or_default();
    if value.is_empty() {
        return Err(err(
            StanzaErrorCondition::NotAcceptable,
            &format!("a {field} is required"),
        ));
    }
    Ok(value)
}

/// The non-empty, bounded password of a query.
fn password_of(query: &Element) -> Result<String, StanzaError> {
    let pw = required(query, "password")?;
    if pw.len() > MAX_PASSWORD_BYTES {
        return Err(err(
            StanzaErrorCondition::NotAcceptable,
            "password too long",
        ));
    }
    Ok(pw)
}

struct PreAuthRegister {
    limiter: Arc<Limiter>,
}

#[async_trait]
impl PreAuthIqHandler for PreAuthRegister {
    async fn handle_pre_auth_iq(&self, server: &Arc<Server>, req: PreAuthIq) -> IqResult {
        if !server.config.registration.enabled || !server.is_local_host(&req.host) {
            return Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
        }
        let Some(query) = req
            .stanza
            .first_child()
            .filter(|q| q.is("query", NS_REGISTER))
        else {
            return Err(StanzaError::new(StanzaErrorCondition::BadRequest));
        };
        match req.stanza.attr("type") {
            Some("get") => Ok(Some(
                Element::new("query", NS_REGISTER)
                    .with_child(
                        Element::new("instructions", NS_REGISTER)
                            .with_text("Choose a username and password for use with this server."),
                    )
                    .with_child(Element::new("username", NS_REGISTER))
                    .with_child(Element::new("password", NS_REGISTER)),
            )),
            Some("set") => self.create(server, &req, query).await,
            _ => Err(StanzaError::new(StanzaErrorCondition::BadRequest)),
        }
    }
}

impl PreAuthRegister {
    async fn create(&self, server: &Arc<Server>, req: &PreAuthIq, query: &Element) -> IqResult {
        if query.has_child("remove", NS_REGISTER) {
            // §3.2 table: cancelling needs an account, and we do not know who this is yet.
            return Err(StanzaError::new(StanzaErrorCondition::UnexpectedRequest));
        }
        let username = required(query, "username")?;
        let password = password_of(query)?;
        let jid = Jid::new(Some(&username), &req.host, None).map_err(|e| {
            err(
                StanzaErrorCondition::JidMalformed,
                &format!("not a valid username: {e}"),
            )
        })?;
        let Some((host, user)) = account_key(&jid) else {
            return Err(StanzaError::new(StanzaErrorCondition::JidMalformed));
        };
        let interval = Duration::from_secs(server.config.registration.min_interval_secs);
        let claim = match req.peer.map(|p| p.ip()) {
            Some(ip) if !interval.is_zero() => match self.limiter.claim(ip, interval) {
                Ok(previous) => Some((ip, previous)),
                Err(wait) => {
                    return Err(StanzaError::new(StanzaErrorCondition::ResourceConstraint)
                        .with_text(format!(
                            "too many registrations from your address; retry in {} s",
                            wait.as_secs().max(1)
                        )));
                }
            },
            _ => None,
        };
        let result = create_account(server, host, user, password).await;
        match &result {
            Ok(_) => info!(jid = %jid, peer = ?req.peer, "account registered in band"),
            // A taken name uses up the turn: otherwise registration would be a free, unthrottled
            // way to ask whether an account exists. Other failures give the slot back.
            Err(e) if e.condition == StanzaErrorCondition::Conflict => {}
            Err(_) => {
                if let Some((ip, previous)) = claim {
                    self.limiter.release(ip, previous);
                }
            }
        }
        result
    }
}

async fn create_account(
    server: &Arc<Server>,
    host: &str,
    user: &str,
    password: String,
) -> IqResult {
    // Cheap check first, so a taken name costs no PBKDF2.
    if server
        .store
        .account_exists(host, user)
        .await
        .map_err(store_error)?
    {
        return Err(StanzaError::new(StanzaErrorCondition::Conflict));
    }
    let creds = hash_password(password).await?;
    match server.store.create_account(host, user, &creds).await {
        Ok(()) => Ok(None),
        Err(StoreError::Conflict(_)) => Err(StanzaError::new(StanzaErrorCondition::Conflict)),
        Err(e) => Err(store_error(e)),
    }
}

/// Registration requests of an authenticated user about their own account.
struct AccountRegister;

#[async_trait]
impl IqHandler for AccountRegister {
    async fn handle_iq(&self, server: &Arc<Server>, req: IqRequest) -> IqResult {
        let bare = req.from.bare();
        // To the server: only the user's own server holds their registration.
        if req.target == IqTarget::Host && req.to.domain() != bare.domain() {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        }
        let Some((host, user)) = account_key(&bare) else {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        };
        let query = &req.payload;
        if !req.is_set {
            return Ok(Some(
                Element::new("query", NS_REGISTER)
                    .with_child(Element::new("registered", NS_REGISTER))
                    .with_child(Element::new("username", NS_REGISTER).with_text(user)),
            ));
        }
        if query.has_child("remove", NS_REGISTER) {
            if query.children().count() != 1 {
                return Err(err(
                    StanzaErrorCondition::BadRequest,
                    "<remove/> must be the only child",
                ));
            }
            // Contacts are told first, then the data goes and the sessions close (their
            // stream sees the close after this result, queued on its own task, is written).
            match server.remove_account(&bare).await {
                Ok(()) => {}
                Err(StoreError::NotFound(_)) => {
                    return Err(StanzaError::new(StanzaErrorCondition::RegistrationRequired))
                }
                Err(e) => return Err(store_error(e)),
            }
            info!(jid = %bare, "account removed in band");
            return Ok(None);
        }
        change_password(server, &req, host, user, query).await
    }
}

async fn change_password(
    server: &Arc<Server>,
    req: &IqRequest,
    host: &str,
    user: &str,
    query: &Element,
) -> IqResult {
    if !server.config.registration.allow_password_change {
        return Err(StanzaError::new(StanzaErrorCondition::NotAllowed));
    }
    // §3.3: a deployment may refuse password changes over an unencrypted stream.
    if req.origin.as_ref().is_some_and(|s| !s.secure) {
        return Err(err(
            StanzaErrorCondition::NotAuthorized,
            "password changes need an encrypted stream",
        ));
    }
    let Some(username) = query.child_text("username", NS_REGISTER) else {
        return Err(err(
            StanzaErrorCondition::BadRequest,
            "<username/> is required",
        ));
    };
    if !query.has_child("password", NS_REGISTER) {
        return Err(err(
            StanzaErrorCondition::BadRequest,
            "<password/> is required",
        ));
    }
    // The username may be given as the localpart or as the bare JID (COMPAT: some clients).
    let local = username
        .strip_suffix(&format!("@{host}"))
        .unwrap_or(&username);
    if normalize_localpart(local).ok().as_deref() != Some(user) {
        return Err(err(
            StanzaErrorCondition::Forbidden,
            "you can only change your own password",
        ));
    }
    // §3.3: an empty password never replaces the current one.
    let password = password_of(query)?;
    let creds = hash_password(password).await?;
    match server.store.set_credentials(host, user, &creds).await {
        Ok(()) => Ok(None),
        Err(StoreError::NotFound(_)) => {
            Err(StanzaError::new(StanzaErrorCondition::RegistrationRequired))
        }
        Err(e) => Err(store_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_claims_and_releases() {
        let l = Limiter::default();
        let ip: IpAddr = [192, 0, 2, 1].into();
        let minute = Duration::from_secs(60);
        let prev = l.claim(ip, minute).expect("first claim");
        assert_eq!(prev, None);
        assert!(l.claim(ip, minute).is_err());
        // Another address is independent.
        assert!(l.claim([192, 0, 2, 2].into(), minute).is_ok());
        l.release(ip, prev);
        assert!(l.claim(ip, minute).is_ok());
        // A zero-length interval never blocks.
        assert!(l.claim(ip, Duration::ZERO).is_ok());
    }
}
