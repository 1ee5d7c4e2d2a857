//! The local admin endpoint: a Unix socket in the data folder (mode 0600, folder 0700), so only
//! the server's own user and root can drive the server. One JSON line each way per command.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use starling_core::Server;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use super::{execute, AdminError, Command, Target};

#[derive(Serialize, Deserialize)]
struct Request {
    command: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Reply {
    ok: bool,
    output: String,
}

/// Binds the admin socket and serves it until the server stops.
pub fn serve(server: Arc<Server>, path: &Path) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if path.exists() {
        // A socket left by a server that did not exit cleanly; a live one answers.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "another server is running with this data folder (its admin socket {} answers)",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let mut shutdown = server.shutdown_signal();
    let owned_path = path.to_path_buf();
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(handle(server.clone(), stream));
                    }
                    Err(e) => {
                        warn!("admin socket accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let _ = std::fs::remove_file(&owned_path);
    }))
}

async fn handle(server: Arc<Server>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Some(line)) = lines.next_line().await else {
        return;
    };
    let reply = match serde_json::from_str::<Request>(&line) {
        Err(e) => Reply {
            ok: false,
            output: format!("bad admin request: {e}"),
        },
        Ok(req) => match Command::parse(&req.command) {
            Err(e) => Reply {
                ok: false,
                output: e.to_string(),
            },
            Ok(cmd) => {
                // The password is the last word of the commands that take one: never logged.
                info!(command = %req.command.first().map(String::as_str).unwrap_or(""), "admin command");
                match execute(Target::Running(&server), cmd).await {
                    Ok(output) => Reply { ok: true, output },
                    Err(e) => Reply {
                        ok: false,
                        output: e.to_string(),
                    },
                }
            }
        },
    };
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let _ = write.write_all(text.as_bytes()).await;
    }
}

/// Why the CLI could not get an answer from a running server.
#[derive(Debug)]
pub enum ClientError {
    /// No server listens on the socket.
    NotRunning,
    Io(std::io::Error),
}

/// Sends one command to the running server. `Ok(Err(..))` is the command's own failure.
pub async fn call(path: &Path, cmd: &Command) -> Result<Result<String, AdminError>, ClientError> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NotRunning)
        }
        Err(e) => return Err(ClientError::Io(e)),
    };
    let (read, mut write) = stream.into_split();
    let mut req = serde_json::to_string(&Request {
        command: cmd.to_words(),
    })
    .map_err(|e| ClientError::Io(std::io::Error::other(e)))?;
    req.push('\n');
    write
        .write_all(req.as_bytes())
        .await
        .map_err(ClientError::Io)?;
    let mut lines = BufReader::new(read).lines();
    let line = lines
        .next_line()
        .await
        .map_err(ClientError::Io)?
        .ok_or_else(|| {
            ClientError::Io(std::io::Error::other("the server closed the admin socket"))
        })?;
    let reply: Reply =
        serde_json::from_str(&line).map_err(|e| ClientError::Io(std::io::Error::other(e)))?;
    Ok(if reply.ok {
        Ok(reply.output)
    } else {
        Err(AdminError::Failed(reply.output))
    })
}
