//! Leader election on a `coordination.k8s.io` Lease: only the holder
//! reconciles; the others keep their caches warm and take over when the
//! holder stops renewing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

/// How long a lease holds without renewal.
pub const LEASE_SECONDS: i32 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(2);

/// Keeps trying to hold `name` in `namespace` as `identity`, setting
/// `leader` accordingly, until `stop` is set; then gives the lease up.
pub async fn run(
    client: Client,
    namespace: String,
    name: String,
    identity: String,
    leader: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    while !stop.load(Ordering::Relaxed) {
        match try_hold(&api, &name, &identity).await {
            Ok(held) => {
                if held != leader.swap(held, Ordering::Relaxed) {
                    info!(held, lease = %name, %identity, "leadership changed");
                }
            }
            Err(err) => {
                warn!(error = %err, "lease update failed");
                // Could not renew: assume another replica may take over.
                if leader.swap(false, Ordering::Relaxed) {
                    info!(lease = %name, "leadership lost");
                }
            }
        }
        tokio::time::sleep(RENEW_EVERY).await;
    }
    if leader.swap(false, Ordering::Relaxed)
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
