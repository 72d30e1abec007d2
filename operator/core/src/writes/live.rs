//! What the cluster holds now, that writes are compared against.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::keys::{ObjectKey, StatusKind, StatusTarget};
use crate::names::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::provision::ProvisionedKind;

/// One object the operator provisioned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owned {
    pub kind: ProvisionedKind,
    pub key: ObjectKey,
}

/// What a provisioned object says of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedState {
    /// What was last applied ([`ProvisionedKind::live_hash`]).
    pub hash: Option<String>,
    /// Being deleted already.
    pub deleting: bool,
}

/// A Gateway API object's status as the API server stores it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveStatus {
    /// The object's resourceVersion: a patch carries it, so that a
    /// concurrent writer makes the patch fail instead of being overwritten.
    pub resource_version: String,
    pub status: Option<Arc<serde_json::Value>>,
}

/// What the cluster holds now, that writes are compared against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// Every object labelled as provisioned by this operator.
    pub owned: BTreeMap<Owned, OwnedState>,
    /// Every Gateway API object whose status the operator may write.
    pub statuses: BTreeMap<StatusTarget, LiveStatus>,
}

impl Live {
    /// Records a live object of a provisioned kind, if the operator
    /// provisioned it (its managed-by label says so).
    pub fn own(&mut self, kind: ProvisionedKind, meta: &ObjectMeta) {
        let managed = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .is_some_and(|v| v == MANAGED_BY);
        if !managed {
            return;
        }
        self.owned.insert(
            Owned {
                kind,
                key: ObjectKey::of(meta),
            },
            OwnedState {
                hash: kind.live_hash(meta),
                deleting: meta.deletion_timestamp.is_some(),
            },
        );
    }
}

impl Live {
    /// The live status of an object, if it still exists.
    pub fn status(&self, kind: StatusKind, key: &ObjectKey) -> Option<&LiveStatus> {
        self.statuses.get(&StatusTarget::new(kind, key.clone()))
    }
}
