//! Why a decision cannot be carried out as made.

/// A config Secret the operator will not write: the proxy would refuse the
/// document, so the last good one stays and the reason is reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the compiled config of {gateway} is invalid, so it was not written: {errors}")]
    InvalidConfig { gateway: String, errors: String },
    #[error("encoding the config of {gateway}: {message}")]
    Encode { gateway: String, message: String },
    #[error(
        "the compiled config of {gateway} is {size} bytes compressed, over the {limit} bytes a Secret holds, so it was not written"
    )]
    TooLarge {
        gateway: String,
        size: usize,
        limit: usize,
    },
}
