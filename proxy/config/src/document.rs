//! The envelope around a [`GatewayConfig`] and its wire encoding.
//!
//! The operator writes an encoded document into the Gateway's config Secret;
//! the proxy reads it from there (or from a file). Encoding is canonical
//! compact JSON, gzip-compressed above [`COMPRESS_ABOVE`] bytes because
//! Secrets are limited to 1 MiB. Decoding sniffs the gzip magic, so both
//! forms are always accepted.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::GatewayConfig;

/// The format this build writes and reads. Bumped on any change an older
/// proxy would misread; unknown fields are refused rather than ignored, so a
/// proxy never silently serves less than the operator compiled.
pub const FORMAT_VERSION: u32 = 1;

/// Encoded documents larger than this are gzip-compressed.
pub const COMPRESS_ABOVE: usize = 64 * 1024;

/// A decompressed document larger than this is refused, so that a small
/// compressed payload cannot exhaust the proxy's memory.
pub const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// What the operator writes and the proxy reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigDocument {
    pub format_version: u32,
    /// Increases with every write for a Gateway; the proxy reports the
    /// generation it applied, which tells the operator when a change is live.
    pub generation: u64,
    /// [`content_hash`] of `config`. The generation is left out so that the
    /// operator can compare hashes to skip writes that change nothing.
    pub hash: String,
    pub config: GatewayConfig,
}

impl ConfigDocument {
    /// Wraps a config with the current format version and its hash.
    pub fn new(generation: u64, config: GatewayConfig) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            generation,
            hash: content_hash(&config),
            config,
        }
    }
}

/// Errors turning a document into bytes or back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("config is not valid JSON for format version {FORMAT_VERSION} at `{path}`: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("config could not be serialized: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("config is not valid gzip: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("config decompresses to more than {MAX_DECODED_BYTES} bytes")]
    TooLarge,
}

/// Hex SHA-256 of the canonical JSON of a config.
pub fn content_hash(config: &GatewayConfig) -> String {
    let mut hasher = Sha256::new();
    // Serializing plain data structs with string keys cannot fail; should it
    // ever, hashing the error text still yields a hash that matches nothing.
    match serde_json::to_vec(config) {
        Ok(bytes) => hasher.update(&bytes),
        Err(err) => hasher.update(err.to_string().as_bytes()),
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Canonical bytes of a document: compact JSON, gzip above [`COMPRESS_ABOVE`].
pub fn encode(document: &ConfigDocument) -> Result<Vec<u8>, CodecError> {
    let json = serde_json::to_vec(document).map_err(CodecError::Serialize)?;
    if json.len() <= COMPRESS_ABOVE {
        return Ok(json);
    }
    // flate2 writes a zero mtime and no file name, so equal input gives
    // byte-identical output.
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::new(6));
    encoder.write_all(&json).map_err(CodecError::Gzip)?;
    encoder.finish().map_err(CodecError::Gzip)
}

/// Parses a document written by [`encode`], compressed or not. Structural
/// errors name the path where parsing stopped; use [`crate::validate`] for
/// everything else.
pub fn decode(bytes: &[u8]) -> Result<ConfigDocument, CodecError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        let mut json = Vec::new();
        GzDecoder::new(bytes)
            .take(MAX_DECODED_BYTES + 1)
            .read_to_end(&mut json)
            .map_err(CodecError::Gzip)?;
        if json.len() as u64 > MAX_DECODED_BYTES {
            return Err(CodecError::TooLarge);
        }
        parse_json(&json)
    } else {
        parse_json(bytes)
    }
}

fn parse_json(json: &[u8]) -> Result<ConfigDocument, CodecError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize(deserializer).map_err(|err| CodecError::Json {
        path: err.path().to_string(),
        source: err.into_inner(),
    })
}
