//! Leader election on a `coordination.k8s.io` Lease: only the holder
//! reconciles; the others keep their caches warm and take over when the
//! holder stops renewing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

/// How long a lease holds without renewal.
pub const LEASE_SECONDS: i32 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(2);

/// Whether this replica holds the lease, with a wake-up for the moment it
/// starts to: a follower's caches saw every event, but it reconciled none of
/// them, so the new leader must reconcile at once instead of waiting for the
/// next change.
#[derive(Debug, Default)]
pub struct Leadership {
    held: AtomicBool,
    gained: Notify,
}

impl Leadership {
    pub fn new(held: bool) -> Self {
        Self {
            held: AtomicBool::new(held),
            gained: Notify::new(),
        }
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// Records whether the lease is held; returns whether that changed.
    pub fn set(&self, held: bool) -> bool {
        let was = self.held.swap(held, Ordering::Relaxed);
        if held && !was {
            // A stored permit: the reconcile loop may be busy right now.
            self.gained.notify_one();
        }
        was != held
    }

    /// Resolves after the lease was gained (at once if that happened since
    /// the last call).
    pub async fn gained(&self) {
        self.gained.notified().await;
    }
}

/// Keeps trying to hold `name` in `namespace` as `identity`, recording it in
/// `leader`, until `stop` is set; then gives the lease up.
pub async fn run(
    client: Client,
    namespace: String,
    name: String,
    identity: String,
    leader: Arc<Leadership>,
    stop: Arc<AtomicBool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    while !stop.load(Ordering::Relaxed) {
        match try_hold(&api, &name, &identity).await {
            Ok(held) => {
                if leader.set(held) {
                    info!(held, lease = %name, %identity, "leadership changed");
                }
            }
            Err(err) => {
                warn!(error = %err, "lease update failed");
                // Could not renew: assume another replica may take over.
                if leader.set(false) {
                    info!(lease = %name, "leadership lost");
                }
            }
        }
        tokio::time::sleep(RENEW_EVERY).await;
    }
    if leader.set(false)
        && let Ok(Some(mut lease)) = api.get_opt(&name).await
        && let Some(spec) = lease.spec.as_mut()
    {
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        let _ = api.replace(&name, &PostParams::default(), &lease).await;
    }
}

async fn try_hold(api: &Api<Lease>, name: &str, identity: &str) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.to_owned()),
                lease_duration_seconds: Some(LEASE_SECONDS),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(response)) if response.code == 409 => Ok(false),
            Err(err) => Err(err),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
        renewed.0.as_second() + duration < now.as_second()
    });
    if holder != identity && !holder.is_empty() && !expired {
        return Ok(false);
    }
    if holder != identity {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(identity.to_owned());
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(LEASE_SECONDS);
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gaining_the_lease_wakes_a_waiter_even_one_that_comes_late() {
        let leadership = Leadership::new(false);
        assert!(leadership.set(true));
        assert!(!leadership.set(true), "renewing is no change");
        tokio::time::timeout(Duration::from_secs(1), leadership.gained())
            .await
            .unwrap_or_else(|_| panic!("the gain was stored for a late waiter"));
        assert!(leadership.set(false));
        assert!(!leadership.is_held());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), leadership.gained())
                .await
                .is_err(),
            "losing the lease wakes nobody"
        );
    }
}
