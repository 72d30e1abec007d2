//! The contract between the Portcullis operator and proxy.
//!
//! The operator compiles everything one Gateway needs into a
//! [`ConfigDocument`], [`encode`]s it into the Gateway's config Secret, and the
//! proxy [`decode`]s and [`validate`]s it before swapping it in. This crate
//! depends on serde and small pure-Rust helpers only, so both sides (and
//! tests, benchmarks and fuzzers) can link it cheaply.

mod delivery;
mod document;
mod model;
mod validate;

pub use delivery::{CONFIG_APPLIED_CONDITION, CONFIG_SECRET_KEY, Generation};
pub use document::{
    COMPRESS_ABOVE, CodecError, ConfigDocument, FORMAT_VERSION, MAX_DECODED_BYTES, content_hash,
    decode, encode,
};
pub use model::*;
pub use validate::{
    MAX_SESSION_NAME_LEN, MAX_WEIGHT, REGEX_SIZE_LIMIT, ValidationError, ValidationErrors,
    anchored_regex, is_cookie_path, is_session_name, validate,
};

/// Why a document could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

/// Decodes and validates: what a proxy does with bytes it was handed.
pub fn load(bytes: &[u8]) -> Result<ConfigDocument, LoadError> {
    let document = decode(bytes)?;
    validate(&document)?;
    Ok(document)
}

#[cfg(test)]
mod tests;
