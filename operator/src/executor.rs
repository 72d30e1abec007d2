//! Carries out what the core decided: server-side apply of provisioned
//! objects (in waves), deletion of stale ones, status patches. Nothing here
//! decides; every call is listed in `rbac.rs`.

use futures::StreamExt;
use kube::api::{DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use operator_core::names::FIELD_MANAGER;
use operator_core::provision::{Desired, ProvisionedKind};
use operator_core::writes::{Owned, StatusPatch, Writes};

use crate::backoff::WriteTarget;
use tracing::{debug, info, warn};

use crate::discovery::GatewayApis;
use crate::error::Error;

/// Status patches sent at once.
const CONCURRENT_PATCHES: usize = 8;

/// What carrying out a pass's writes came to.
#[derive(Debug, Default)]
pub struct Done {
    /// Objects applied, deleted or status-patched.
    pub writes: usize,
    /// Status patches that lost a race with another writer (or whose object
    /// was deleted meanwhile): the next pass recomputes them.
    pub conflicts: usize,
    /// The targets written (or found gone), for the backoff to forget.
    pub succeeded: Vec<WriteTarget>,
    /// Every write that failed, by target. Configs the core refused are not
    /// among them: their Gateway's status says why, and retrying changes
    /// nothing.
    pub failed: Vec<(WriteTarget, Error)>,
}

impl Done {
    fn record<T>(&mut self, target: WriteTarget, result: Result<T, Error>) -> Option<T> {
        match result {
            Ok(value) => {
                self.succeeded.push(target);
                Some(value)
            }
            Err(err) => {
                self.failed.push((target, err));
                None
            }
        }
    }
}

/// Makes the writes through one client.
pub struct Executor {
    client: Client,
    apis: GatewayApis,
}

impl Executor {
    pub fn new(client: Client, apis: GatewayApis) -> Self {
        Executor { client, apis }
    }

    pub async fn execute(&self, writes: &Writes) -> Done {
        let mut done = Done::default();
        for (gateway, refused) in &writes.refused {
            warn!(gateway = %gateway, error = %refused, "config not written");
        }
        for wave in writes.waves() {
            let results = futures::future::join_all(wave.into_iter().map(|object| async move {
                let target = WriteTarget::Object(Owned {
                    kind: object.kind,
                    key: object.key.clone(),
                });
                (target, self.apply(object).await)
            }))
            .await;
            for (target, result) in results {
                if done.record(target, result).is_some() {
                    done.writes += 1;
                }
            }
        }
        for owned in &writes.delete {
            let result = self.delete(owned).await;
            if done.record(WriteTarget::Object(owned.clone()), result) == Some(true) {
                done.writes += 1;
            }
        }
        let mut patches = futures::stream::iter(writes.statuses.iter().map(|patch| async move {
            (
                WriteTarget::Status(patch.target.clone()),
                self.patch_status(patch).await,
            )
        }))
        .buffer_unordered(CONCURRENT_PATCHES);
        while let Some((target, result)) = patches.next().await {
            match done.record(target, result) {
                Some(Patched::Written) => done.writes += 1,
                Some(Patched::Conflict) => done.conflicts += 1,
                Some(Patched::NotServed) | None => {}
            }
        }
        done
    }

    fn provisioned_api(&self, kind: ProvisionedKind, namespace: &str) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(kind.group(), kind.version(), kind.name()),
            kind.plural(),
        );
        Api::namespaced_with(self.client.clone(), namespace, &resource)
    }

    async fn apply(&self, object: &Desired) -> Result<(), Error> {
        let api = self.provisioned_api(object.kind, &object.key.namespace);
        api.patch(
            &object.key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object.body),
        )
        .await?;
        info!(kind = object.kind.name(), object = %object.key, "applied");
        Ok(())
    }

    /// Whether the object was deleted (false when it was gone already).
    async fn delete(&self, owned: &Owned) -> Result<bool, Error> {
        let api = self.provisioned_api(owned.kind, &owned.key.namespace);
        match api
            .delete(&owned.key.name, &DeleteParams::background())
            .await
        {
            Ok(_) => {
                info!(kind = owned.kind.name(), object = %owned.key, "deleted stale object");
                Ok(true)
            }
            Err(kube::Error::Api(response)) if response.code == 404 => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    async fn patch_status(&self, patch: &StatusPatch) -> Result<Patched, Error> {
        let kind = patch.target.kind;
        let Some(resource) = self.apis.resources.get(kind.name()) else {
            return Ok(Patched::NotServed);
        };
        let key = &patch.target.key;
        let api: Api<DynamicObject> = if kind.namespaced() {
            Api::namespaced_with(self.client.clone(), &key.namespace, resource)
        } else {
            Api::all_with(self.client.clone(), resource)
        };
        // resourceVersion makes this a compare-and-swap: a concurrent writer
        // (another controller sharing the object) makes it fail and the next
        // pass recomputes from what it wrote.
        let body = serde_json::json!({
            "metadata": { "resourceVersion": patch.resource_version },
            "status": patch.status,
        });
        match api
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => {
                debug!(target = %patch.target, "status written");
                Ok(Patched::Written)
            }
            Err(kube::Error::Api(response)) if response.code == 409 || response.code == 404 => {
                Ok(Patched::Conflict)
            }
            Err(err) => Err(err.into()),
        }
    }
}

enum Patched {
    Written,
    Conflict,
    /// The kind is not served (its CRD went away): nothing to patch.
    NotServed,
}
