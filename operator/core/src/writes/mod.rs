//! Plans and what is live → the writes to make: the objects to apply, the
//! ones to delete, the status patches to send. The operator carries them
//! out as given; tests assert on the value.
//!
//! Nothing is written that would change nothing: a provisioned object whose
//! live hash equals the desired one is left alone, and a status equal to
//! the desired one (timestamps kept where a condition's status did not
//! move) is not patched.

use crate::snapshot::Snapshot;
use crate::translate::{Translation, translate};

mod batch;
mod context;
mod live;
mod provisioned;
mod statuses;

#[cfg(test)]
mod tests;

pub use batch::{StatusPatch, Writes};
pub use context::{Context, Scope, StatusMemo};
pub use live::{Live, LiveStatus, Owned, OwnedState};

/// Everything a pass decides from what the cluster holds: the translation
/// of `snapshot`, and the writes that make the cluster what it says.
pub fn decide(snapshot: &Snapshot, live: &Live, context: &Context<'_>) -> (Translation, Writes) {
    let translation = translate(snapshot);
    let writes = writes(&translation, live, context);
    (translation, writes)
}

/// The writes that make the cluster what `translation` says it should be.
pub fn writes(translation: &Translation, live: &Live, context: &Context<'_>) -> Writes {
    let mut out = Writes::default();
    provisioned::provisioned(translation, live, context, &mut out);
    statuses::gateways(translation, live, context, &mut out);
    if context.scope == Scope::All {
        statuses::classes(translation, live, context, &mut out);
        statuses::routes(translation, live, context, &mut out);
        statuses::policies(translation, live, context, &mut out);
        statuses::listener_sets(translation, live, context, &mut out);
    }
    out
}
