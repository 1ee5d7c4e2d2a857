//! The one admin command tree (ARCHITECTURE.md §5): parsed from CLI words, executed against a
//! running server (through the admin socket) or, for account commands while the server is
//! stopped, against the store directly. Output lines follow mongooseimctl's.

pub mod socket;

use std::sync::Arc;

use rand::Rng;
use starling_core::{DomainLookup, Server};
use starling_proto::sasl::{StoredCredentials, DEFAULT_ITERATIONS};
use starling_proto::{Jid, StreamError, StreamErrorCondition};
use starling_store::{Store, StoreError};

/// Every admin command, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Register {
        host: String,
        password: String,
    },
    RegisterIdentified {
        user: String,
        host: String,
        password: String,
    },
    Unregister {
        user: String,
        host: String,
    },
    ChangePassword {
        user: String,
        host: String,
        password: String,
    },
    RegisteredUsers {
        host: String,
    },
    ConnectedUsers,
    S2sConnections,
    Components,
    KickSession {
        jid: String,
        reason: Option<String>,
    },
    Status,
}

/// The usage lines, shown by `starling ctl help` and on a wrong call.
pub const USAGE: &str = "\
  register HOST PASSWORD                      create an account with a random user name
  register_identified USER HOST PASSWORD      create USER@HOST
  unregister USER HOST                        delete an account and all its data
  change_password USER HOST NEWPASSWORD       set a new password
  registered_users HOST                       list the accounts of HOST
  connected_users                             list connected sessions (full JIDs)
  s2s_connections                             list server-to-server streams (direction, local,
                                              remote, auth, TLS, state, bidi, age)
  components                                  list configured external components (XEP-0114):
                                              domain, connected or not, peer address, age
  kick_session JID [REASON]                   disconnect a session
  status                                      is the server running, and how";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl Command {
    /// Parses the words after `ctl`.
    pub fn parse(words: &[String]) -> Result<Command, AdminError> {
        let Some((name, args)) = words.split_first() else {
            return Err(AdminError::Usage(format!(
                "missing command; commands:\n{USAGE}"
            )));
        };
        let arity = |n: usize, shape: &str| -> Result<(), AdminError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(AdminError::Usage(format!(
                    "{name} takes {n} argument{}: {name} {shape}",
                    if n == 1 { "" } else { "s" }
                )))
            }
        };
        let a = |i: usize| args[i].clone();
        Ok(match name.as_str() {
            "register" => {
                arity(2, "HOST PASSWORD")?;
                Command::Register {
                    host: a(0),
                    password: a(1),
                }
            }
            "register_identified" => {
                arity(3, "USER HOST PASSWORD")?;
                Command::RegisterIdentified {
                    user: a(0),
                    host: a(1),
                    password: a(2),
                }
            }
            "unregister" => {
                arity(2, "USER HOST")?;
                Command::Unregister {
                    user: a(0),
                    host: a(1),
                }
            }
            "change_password" => {
                arity(3, "USER HOST NEWPASSWORD")?;
                Command::ChangePassword {
                    user: a(0),
                    host: a(1),
                    password: a(2),
                }
            }
            "registered_users" => {
                arity(1, "HOST")?;
                Command::RegisteredUsers { host: a(0) }
            }
            "connected_users" => {
                arity(0, "")?;
                Command::ConnectedUsers
            }
            "s2s_connections" => {
                arity(0, "")?;
                Command::S2sConnections
            }
            "components" => {
                arity(0, "")?;
                Command::Components
            }
            "kick_session" => {
                if args.is_empty() {
                    return Err(AdminError::Usage(
                        "kick_session takes a JID and an optional reason: kick_session JID [REASON]".into(),
                    ));
                }
                Command::KickSession {
                    jid: a(0),
                    reason: (args.len() > 1).then(|| args[1..].join(" ")),
                }
            }
            "status" => {
                arity(0, "")?;
                Command::Status
            }
            other => {
                return Err(AdminError::Usage(format!(
                    "unknown command {other:?}; commands:\n{USAGE}"
                )))
            }
        })
    }

    /// The command as words again (what the CLI sends over the admin socket).
    pub fn to_words(&self) -> Vec<String> {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        match self {
            Command::Register { host, password } => w(&["register", host, password]),
            Command::RegisterIdentified {
                user,
                host,
                password,
            } => w(&["register_identified", user, host, password]),
            Command::Unregister { user, host } => w(&["unregister", user, host]),
            Command::ChangePassword {
                user,
                host,
                password,
            } => w(&["change_password", user, host, password]),
            Command::RegisteredUsers { host } => w(&["registered_users", host]),
            Command::ConnectedUsers => w(&["connected_users"]),
            Command::S2sConnections => w(&["s2s_connections"]),
            Command::Components => w(&["components"]),
            Command::KickSession { jid, reason } => {
                let mut v = w(&["kick_session", jid]);
                v.extend(reason.clone());
                v
            }
            Command::Status => w(&["status"]),
        }
    }

    /// Commands that only make sense against a running server.
    pub fn needs_server(&self) -> bool {
        matches!(
            self,
            Command::ConnectedUsers
                | Command::S2sConnections
                | Command::Components
                | Command::KickSession { .. }
                | Command::Status
        )
    }
}

/// What the commands act on: the running server, or only its store (server stopped).
pub enum Target<'a> {
    Running(&'a Arc<Server>),
    StoreOnly {
        store: &'a Arc<dyn Store>,
        hosts: &'a [String],
    },
}

impl Target<'_> {
    fn store(&self) -> &Arc<dyn Store> {
        match self {
            Target::Running(s) => &s.store,
            Target::StoreOnly { store, .. } => store,
        }
    }

    fn check_host(&self, host: &str) -> Result<(), AdminError> {
        let served = match self {
            Target::Running(s) => s.config.is_local_host(host),
            Target::StoreOnly { hosts, .. } => hosts.iter().any(|h| h == host),
        };
        if served {
            Ok(())
        } else {
            Err(AdminError::Failed(format!(
                "Host {host} is not served by this server (see `hosts` in the config)"
            )))
        }
    }
}

/// Runs a command; `Ok` is the text to print.
pub async fn execute(target: Target<'_>, cmd: Command) -> Result<String, AdminError> {
    match cmd {
        Command::Register { host, password } => {
            target.check_host(&host)?;
            // Retry on the (astronomically unlikely) clash of random names.
            for _ in 0..5 {
                let user = random_user_name();
                match create(&target, &user, &host, &password).await {
                    Err(AdminError::Failed(m)) if m.ends_with("already registered") => continue,
                    other => return other,
                }
            }
            Err(AdminError::Failed(
                "could not find a free random user name".into(),
            ))
        }
        Command::RegisterIdentified {
            user,
            host,
            password,
        } => {
            target.check_host(&host)?;
            create(&target, &user, &host, &password).await
        }
        Command::Unregister { user, host } => {
            target.check_host(&host)?;
            let jid = account_jid(&user, &host)?;
            let removed = match &target {
                // Contacts are told and sessions closed (XEP-0077 §3.2 does the same).
                Target::Running(server) => server.remove_account(&jid).await,
                Target::StoreOnly { store, .. } => {
                    store
                        .delete_account(&host, jid.node().unwrap_or_default())
                        .await
                }
            };
            match removed {
                Ok(()) => {}
                Err(StoreError::NotFound(_)) => {
                    return Err(AdminError::Failed(format!("User {jid} does not exist")))
                }
                Err(e) => return Err(AdminError::Failed(format!("storage error: {e}"))),
            }
            Ok(format!("User {jid} successfully unregistered"))
        }
        Command::ChangePassword {
            user,
            host,
            password,
        } => {
            target.check_host(&host)?;
            let jid = account_jid(&user, &host)?;
            check_password(&password)?;
            let creds = hash_password(password).await?;
            match target
                .store()
                .set_credentials(&host, jid.node().unwrap_or_default(), &creds)
                .await
            {
                Ok(()) => Ok(format!("Password for user {jid} successfully changed")),
                Err(StoreError::NotFound(_)) => {
                    Err(AdminError::Failed(format!("User {jid} does not exist")))
                }
                Err(e) => Err(AdminError::Failed(format!("storage error: {e}"))),
            }
        }
        Command::RegisteredUsers { host } => {
            target.check_host(&host)?;
            let users = target
                .store()
                .list_accounts(&host)
                .await
                .map_err(|e| AdminError::Failed(format!("storage error: {e}")))?;
            Ok(users
                .iter()
                .map(|u| format!("{u}@{host}"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        Command::ConnectedUsers => {
            let server = running(&target)?;
            let mut jids: Vec<String> = server
                .sessions
                .all()
                .iter()
                .map(|s| s.jid.to_string())
                .collect();
            jids.sort();
            Ok(jids.join("\n"))
        }
        Command::S2sConnections => {
            let server = running(&target)?;
            match server.extension::<starling_s2s::S2s>() {
                Some(s2s) => Ok(s2s.connections().join("\n")),
                None => Err(AdminError::Failed(
                    "federation is disabled (s2s.listen is empty)".into(),
                )),
            }
        }
        Command::Components => {
            let server = running(&target)?;
            Ok(components(server).join("\n"))
        }
        Command::KickSession { jid, reason } => {
            let server = running(&target)?;
            let full = Jid::parse(&jid)
                .ok()
                .filter(|j| !j.is_bare())
                .ok_or_else(|| {
                    AdminError::Failed(format!("{jid:?} is not a full JID (user@host/resource)"))
                })?;
            let Some(session) = server.sessions.get_full(&full) else {
                return Err(AdminError::Failed(format!("No session {full}")));
            };
            let mut err = StreamError::new(StreamErrorCondition::PolicyViolation);
            err = err.with_text(reason.unwrap_or_else(|| "kicked by administrator".into()));
            session.close(err);
            Ok(format!("Session {full} kicked"))
        }
        Command::Status => {
            let server = running(&target)?;
            Ok(format!(
                "Starling {} is running: {} session(s), {} open stream(s), {} host(s), up {} s",
                env!("CARGO_PKG_VERSION"),
                server.sessions.count(),
                server.open_streams(),
                server.config.hosts.len(),
                server.started.elapsed().as_secs()
            ))
        }
    }
}

/// One line per configured component domain (XEP-0114), sorted: `DOMAIN connected PEER AGEs`
/// or `DOMAIN not-connected`.
fn components(server: &Server) -> Vec<String> {
    let mut domains: Vec<&str> = server
        .config
        .component
        .services
        .iter()
        .map(|s| s.domain.as_str())
        .collect();
    domains.sort_unstable();
    domains.dedup();
    domains
        .into_iter()
        .map(|d| match server.domain_routes.lookup(d) {
            DomainLookup::Route(r) => match r.connection() {
                Some(c) => format!("{d} connected {} {}s", c.peer, c.since.elapsed().as_secs()),
                None => format!("{d} connected"),
            },
            DomainLookup::NotRouted | DomainLookup::Unavailable => format!("{d} not-connected"),
        })
        .collect()
}

fn running<'a>(target: &'a Target<'_>) -> Result<&'a Arc<Server>, AdminError> {
    match target {
        Target::Running(s) => Ok(s),
        Target::StoreOnly { .. } => Err(AdminError::Failed(
            "the server is not running (start it with `starling serve`)".into(),
        )),
    }
}

fn account_jid(user: &str, host: &str) -> Result<Jid, AdminError> {
    Jid::new(Some(user), host, None)
        .map_err(|e| AdminError::Failed(format!("{user:?} is not a valid user name: {e}")))
}

fn check_password(password: &str) -> Result<(), AdminError> {
    if password.is_empty() {
        return Err(AdminError::Failed("the password must not be empty".into()));
    }
    Ok(())
}

/// PBKDF2 for three hashes is CPU work: off the async threads.
async fn hash_password(password: String) -> Result<StoredCredentials, AdminError> {
    tokio::task::spawn_blocking(move || {
        StoredCredentials::from_password(&password, DEFAULT_ITERATIONS)
    })
    .await
    .map_err(|e| AdminError::Failed(format!("internal error: {e}")))
}

async fn create(
    target: &Target<'_>,
    user: &str,
    host: &str,
    password: &str,
) -> Result<String, AdminError> {
    let jid = account_jid(user, host)?;
    check_password(password)?;
    let creds = hash_password(password.to_string()).await?;
    match target
        .store()
        .create_account(host, jid.node().unwrap_or_default(), &creds)
        .await
    {
        Ok(()) => Ok(format!("User {jid} successfully registered")),
        Err(StoreError::Conflict(_)) => {
            Err(AdminError::Failed(format!("User {jid} already registered")))
        }
        Err(e) => Err(AdminError::Failed(format!("storage error: {e}"))),
    }
}

/// A unique random user name in mongooseimctl's shape: `1764-123456-9A7D4C0FBABEEF51`.
fn random_user_name() -> String {
    let mut rng = rand::thread_rng();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    format!(
        "{}-{:06}-{:016X}",
        now / 1_000_000_000,
        now % 1_000_000,
        rng.gen::<u64>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_and_round_trips_every_command() {
        for line in [
            "register localhost pw",
            "register_identified alice localhost pw",
            "unregister alice localhost",
            "change_password alice localhost pw2",
            "registered_users localhost",
            "connected_users",
            "s2s_connections",
            "components",
            "kick_session alice@localhost/x spam",
            "status",
        ] {
            let cmd = Command::parse(&words(line)).expect(line);
            assert_eq!(cmd.to_words(), words(line));
        }
    }

    #[test]
    fn wrong_calls_say_what_is_expected() {
        let e = Command::parse(&words("register_identified alice localhost")).expect_err("arity");
        assert_eq!(
            e.to_string(),
            "register_identified takes 3 arguments: register_identified USER HOST PASSWORD"
        );
        let e = Command::parse(&words("frobnicate")).expect_err("unknown");
        assert!(e.to_string().starts_with("unknown command \"frobnicate\""));
    }

    #[test]
    fn random_names_are_valid_localparts_and_differ() {
        let a = random_user_name();
        let b = random_user_name();
        assert_ne!(a, b);
        assert!(Jid::new(Some(&a), "localhost", None).is_ok());
    }
}
