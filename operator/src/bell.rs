//! The reconcile loop's wake-up: every watch event rings one [`Bell`] (at
//! most one pending wake-up) and says what changed, so that a burst of
//! events costs one pass, and a pass knows whether it may take a shortcut.

use std::collections::BTreeSet;
use std::fmt;

use tokio::sync::Notify;

/// Why the bell rang.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rung {
    /// A watched object of this kind changed.
    Kind(String),
    /// A config Secret held back by the debounce is due.
    DeferredWrite,
    /// A status patch lost a race with another writer: recompute.
    StatusConflict,
}

impl Rung {
    pub fn kind(kind: impl Into<String>) -> Rung {
        Rung::Kind(kind.into())
    }
}

impl fmt::Display for Rung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rung::Kind(kind) => f.write_str(kind),
            Rung::DeferredWrite => f.write_str("deferred config write"),
            Rung::StatusConflict => f.write_str("status conflict"),
        }
    }
}

/// Wakes the reconcile loop and remembers why since the pass that last
/// took the reasons.
#[derive(Debug, Default)]
pub struct Bell {
    wake: Notify,
    rung: std::sync::Mutex<BTreeSet<Rung>>,
}

impl Bell {
    pub fn ring(&self, why: Rung) {
        let mut rung = self
            .rung
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rung.insert(why);
        drop(rung);
        self.wake.notify_one();
    }

    /// Resolves when the bell rings (at once if it rang since the last wait).
    pub async fn rung(&self) {
        self.wake.notified().await;
    }

    /// The reasons rung since the last call; empty for a periodic resync.
    pub fn take(&self) -> BTreeSet<Rung> {
        std::mem::take(
            &mut *self
                .rung
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// The kind EndpointSlice events ring with.
pub const ENDPOINT_SLICE: &str = "EndpointSlice";

/// Whether a pass woken for `rung` may take the endpoint fast path: only
/// endpoints changed, or a debounced write is due (which re-applies the last
/// translation). Anything else, including a resync, translates everything.
pub fn endpoint_only(rung: &BTreeSet<Rung>) -> bool {
    !rung.is_empty()
        && rung.iter().all(|why| match why {
            Rung::Kind(kind) => kind == ENDPOINT_SLICE,
            Rung::DeferredWrite => true,
            Rung::StatusConflict => false,
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::Resource;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    use super::*;

    #[test]
    fn only_endpoint_changes_and_due_writes_take_the_fast_path() {
        let bell = Bell::default();
        assert!(
            !endpoint_only(&bell.take()),
            "a resync translates everything"
        );
        bell.ring(Rung::kind(ENDPOINT_SLICE));
        bell.ring(Rung::kind(ENDPOINT_SLICE));
        let rung = bell.take();
        assert_eq!(rung.len(), 1);
        assert!(endpoint_only(&rung));
        assert!(bell.take().is_empty(), "taking clears");
        bell.ring(Rung::DeferredWrite);
        assert!(endpoint_only(&bell.take()));
        for other in [
            Rung::kind("Service"),
            Rung::kind("Secret"),
            Rung::kind("HTTPRoute"),
            Rung::kind("Pod"),
            Rung::StatusConflict,
        ] {
            bell.ring(Rung::kind(ENDPOINT_SLICE));
            bell.ring(other.clone());
            assert!(!endpoint_only(&bell.take()), "{other} needs a full pass");
        }
    }

    #[test]
    fn watched_kinds_ring_under_their_api_names() {
        assert_eq!(EndpointSlice::KIND, ENDPOINT_SLICE);
    }
}
