//! What one pass writes.

use std::collections::BTreeMap;

use super::live::Owned;
use crate::error::Error;
use crate::keys::{ObjectKey, RouteKey, StatusTarget};
use crate::provision::Desired;
use crate::snapshot::DeployedConfig;
use crate::translate::RouteParentStatus;

/// A status to write, as a merge patch of `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPatch {
    pub target: StatusTarget,
    pub resource_version: String,
    pub status: serde_json::Value,
}

/// Everything one pass writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Writes {
    /// Objects to apply, config Secrets included; see [`Writes::waves`].
    pub apply: Vec<Desired>,
    /// Provisioned objects no Gateway wants any more.
    pub delete: Vec<Owned>,
    pub statuses: Vec<StatusPatch>,
    /// Gateways whose config Secret is in `apply`.
    pub configs_written: Vec<ObjectKey>,
    /// Gateways whose changed config waits for its hold to end.
    pub held_configs: Vec<ObjectKey>,
    /// The config generation each provisioned Gateway has once these writes
    /// are made, for the operator to remember (generations only grow).
    pub generations: Vec<(ObjectKey, DeployedConfig)>,
    /// Gateways whose config Secret was not written, and why: their
    /// `Programmed` condition says so, and nothing is retried until their
    /// inputs change.
    pub refused: Vec<(ObjectKey, Error)>,
    /// Routes whose status is as desired, for [`StatusMemo::remember`].
    pub unchanged_routes: Vec<(RouteKey, (String, Vec<RouteParentStatus>))>,
}

impl Writes {
    /// The objects to apply, in waves: each after the one before it is
    /// applied (RoleBindings after their Roles).
    pub fn waves(&self) -> Vec<Vec<&Desired>> {
        let mut waves: BTreeMap<u8, Vec<&Desired>> = BTreeMap::new();
        for desired in &self.apply {
            waves.entry(desired.kind.wave()).or_default().push(desired);
        }
        waves.into_values().collect()
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty() && self.delete.is_empty() && self.statuses.is_empty()
    }
}
