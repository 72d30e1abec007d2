//! Where config documents come from. `--config FILE` polls a file; the
//! Kubernetes Secret watch arrives with the operator (step 5).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use proxy_config::ConfigDocument;

use crate::Error;

/// Watches a file and yields each new version of it.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    interval: Duration,
    /// (modified, length, inode) of the last version read; editors and
    /// `mv`-style atomic writes change at least one of them.
    seen: Option<(SystemTime, u64, u64)>,
    last_bytes: Vec<u8>,
}

impl FileSource {
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        Self {
            path,
            interval,
            seen: None,
            last_bytes: Vec::new(),
        }
    }

    /// Waits for the file to change (or reads it the first time) and loads
    /// it. Errors are returned so the caller can log them and keep serving.
    pub async fn next(&mut self) -> Result<ConfigDocument, Error> {
        loop {
            if let Some(bytes) = self.changed_bytes().await? {
                return Ok(proxy_config::load(&bytes)?);
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    async fn changed_bytes(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let io = |context: &str, source| Error::Io {
            context: format!("{context} {}", self.path.display()),
            source,
        };
        let metadata = match tokio::fs::metadata(&self.path).await {
            Ok(metadata) => metadata,
            // Missing while being replaced, or not written yet: keep waiting.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && self.seen.is_some() => {
                return Ok(None);
            }
            Err(err) => return Err(io("cannot stat", err)),
        };
        use std::os::unix::fs::MetadataExt;
        let stamp = (
            metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            metadata.len(),
            metadata.ino(),
        );
        if self.seen == Some(stamp) {
            return Ok(None);
        }
        self.seen = Some(stamp);
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|err| io("cannot read", err))?;
        if bytes == self.last_bytes {
            return Ok(None);
        }
        self.last_bytes.clone_from(&bytes);
        Ok(Some(bytes))
    }
}
