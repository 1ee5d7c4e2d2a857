//! The SCRAM SaltedPassword cache file (`--scram-cache`): real clients keep the salted
//! password after the first login, so a second run against the same accounts skips PBKDF2
//! on the client. The file holds SaltedPassword values keyed by a hash of (mechanism,
//! password, salt, iterations): no password in clear, but each value is enough to log in as
//! its account, so the file is private (0600, in a 0700 folder).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use starling_proto::sasl::SaltedPasswordCache;

/// `$XDG_CACHE_HOME/starling-bench/scram-cache`, else `~/.cache/starling-bench/scram-cache`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("starling-bench").join("scram-cache"))
}

/// Loads entries from `path`; a missing file is an empty cache.
pub fn load(cache: &SaltedPasswordCache, path: &Path) -> std::io::Result<usize> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(cache.load_text(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes the whole cache (atomically: a temporary file renamed over the old one).
pub fn save(cache: &SaltedPasswordCache, path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(cache.to_text().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_proto::sasl::{Mechanism, SaltParams};

    #[test]
    fn file_round_trip() {
        let dir = std::env::temp_dir().join(format!("sb-cache-{}", std::process::id()));
        let path = dir.join("sub").join("scram-cache");
        let cache = SaltedPasswordCache::new();
        let params = SaltParams {
            mechanism: Mechanism::ScramSha256,
            salt: b"s".to_vec(),
            iterations: 2,
        };
        cache.get_or_derive(&params, "pw").expect("derive");
        save(&cache, &path).expect("save");
        let again = SaltedPasswordCache::new();
        assert_eq!(load(&again, &path).expect("load"), 1);
        assert_eq!(load(&again, &dir.join("none")).expect("missing"), 0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
