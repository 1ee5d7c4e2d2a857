//! One server per data folder. The server caches what it reads from its store (rosters,
//! blocklists… of active accounts), so it must be the store's only writer while it runs: it
//! holds an exclusive lock on `<data_dir>/starling.lock`, and `ctl` writes to the store
//! directly only when it can take that lock itself (the server is really stopped).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Held for as long as the lock should last; dropping it releases the lock.
#[derive(Debug)]
pub struct DataLock {
    _file: Option<File>,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DataLockError {
    #[error("another process (a running Starling) holds {0}")]
    Held(PathBuf),
    #[error("cannot lock {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

impl DataLock {
    /// Takes the lock on `data_dir`, without waiting. A data folder that does not exist yet
    /// has no server running on it: nothing to lock.
    pub fn acquire(data_dir: &Path) -> Result<DataLock, DataLockError> {
        if !data_dir.is_dir() {
            return Ok(DataLock { _file: None });
        }
        let path = data_dir.join("starling.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DataLockError::Io(path.clone(), e))?;
        match file.try_lock() {
            Ok(()) => Ok(DataLock { _file: Some(file) }),
            Err(TryLockError::WouldBlock) => Err(DataLockError::Held(path)),
            Err(TryLockError::Error(e)) => Err(DataLockError::Io(path, e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("starling-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = DataLock::acquire(&dir).unwrap();
        assert!(matches!(
            DataLock::acquire(&dir),
            Err(DataLockError::Held(_))
        ));
        drop(first);
        assert!(DataLock::acquire(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_needs_no_lock() {
        let dir = std::env::temp_dir().join("starling-lock-missing-folder");
        assert!(DataLock::acquire(&dir).is_ok());
        assert!(!dir.exists());
    }
}
