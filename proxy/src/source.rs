//! Where config documents come from: `--config FILE` polls a file,
//! `--config-secret NAMESPACE/NAME` watches a Secret through the API server.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use proxy_config::{CONFIG_SECRET_KEY, ConfigDocument};

use crate::error::Error;

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
                return load(&bytes);
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

type SecretEvents = futures::stream::BoxStream<
    'static,
    Result<
        kube::runtime::watcher::Event<k8s_openapi::api::core::v1::Secret>,
        kube::runtime::watcher::Error,
    >,
>;

/// Watches the Gateway's config Secret through the API server (not a
/// volume mount: mounted Secrets lag by up to a minute) and yields each
/// new version of its `config` key.
pub struct SecretSource {
    api: kube::Api<k8s_openapi::api::core::v1::Secret>,
    name: String,
    events: Option<SecretEvents>,
    last_bytes: Vec<u8>,
    /// The current list (the watch's initial one, or a re-list) has
    /// yielded the Secret.
    listed: bool,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SecretSource {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: kube::Api::namespaced(client, namespace),
            name: name.to_owned(),
            events: None,
            last_bytes: Vec::new(),
            listed: false,
        }
    }

    /// Waits for the Secret to change and loads it; a missing Secret or key
    /// ([`Error::ConfigMissing`]) or an invalid document is an error the
    /// caller logs while it keeps serving.
    pub async fn next(&mut self) -> Result<ConfigDocument, Error> {
        use futures::StreamExt;
        use kube::runtime::watcher::{self, Event};
        loop {
            let events = self.events.get_or_insert_with(|| {
                let config =
                    watcher::Config::default().fields(&format!("metadata.name={}", self.name));
                watcher::watcher(self.api.clone(), config).boxed()
            });
            let event = match events.next().await {
                Some(event) => event,
                None => {
                    self.events = None;
                    continue;
                }
            };
            let secret = match event {
                Ok(Event::Apply(secret)) => secret,
                Ok(Event::InitApply(secret)) => {
                    self.listed = true;
                    secret
                }
                Ok(Event::Delete(_)) => {
                    // A Secret written again with the same bytes is applied again.
                    self.last_bytes.clear();
                    return Err(Error::ConfigMissing(format!(
                        "config Secret {} was deleted",
                        self.name
                    )));
                }
                Ok(Event::Init) => {
                    self.listed = false;
                    continue;
                }
                Ok(Event::InitDone) if !self.listed => {
                    // The list came back without it: it does not exist (yet).
                    self.last_bytes.clear();
                    return Err(Error::ConfigMissing(format!(
                        "config Secret {} not found",
                        self.name
                    )));
                }
                Ok(Event::InitDone) => continue,
                Err(err) => {
                    // The watcher retries by itself; pace the errors.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Err(Error::Watch(format!(
                        "watching config Secret {}: {err}",
                        self.name
                    )));
                }
            };
            let Some(bytes) = secret
                .data
                .as_ref()
                .and_then(|data| data.get(CONFIG_SECRET_KEY))
                .map(|b| b.0.clone())
            else {
                self.last_bytes.clear();
                return Err(Error::ConfigMissing(format!(
                    "config Secret {} has no {CONFIG_SECRET_KEY:?} key",
                    self.name
                )));
            };
            if bytes == self.last_bytes {
                continue;
            }
            self.last_bytes.clone_from(&bytes);
            return load(&bytes);
        }
    }
}

/// Decodes and validates like [`proxy_config::load`], keeping the
/// generation of a document that decodes but is invalid
/// ([`Error::Invalid`]) so that the refusal can name it.
fn load(bytes: &[u8]) -> Result<ConfigDocument, Error> {
    let document = proxy_config::decode(bytes).map_err(proxy_config::LoadError::from)?;
    proxy_config::validate(&document).map_err(|source| Error::Invalid {
        generation: document.generation,
        source,
    })?;
    Ok(document)
}
