//! What writes are decided with, besides the plans and the live state.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::batch::Writes;
use crate::keys::{ObjectKey, RouteKey};
use crate::provision::Settings;
use crate::translate::{RouteParentStatus, Translation};

/// Which statuses a pass writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every kind.
    All,
    /// Gateways' only: endpoints changed, which cannot change the others.
    Gateways,
}

/// Route status entries found as desired, with the resourceVersion then
/// seen: while neither moves, the route needs no comparison (with many
/// routes, most passes change none of them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusMemo {
    routes: BTreeMap<RouteKey, (String, Vec<RouteParentStatus>)>,
}

impl StatusMemo {
    /// Keeps what a pass found unchanged, and forgets routes that are gone.
    pub fn remember(&mut self, translation: &Translation, writes: &mut Writes) {
        self.routes
            .retain(|key, _| translation.routes.contains_key(key));
        self.routes
            .extend(std::mem::take(&mut writes.unchanged_routes));
    }

    pub(super) fn unchanged(
        &self,
        route: &RouteKey,
        version: &str,
        ours: &[RouteParentStatus],
    ) -> bool {
        self.routes
            .get(route)
            .is_some_and(|(seen, entries)| seen == version && entries == ours)
    }
}

/// What the writes are decided with, besides the plans and the live state.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub settings: &'a Settings,
    /// The time given to conditions whose status changes.
    pub now: &'a Time,
    /// Gateways whose config Secret was written moments ago: a change to
    /// it waits, so that a burst of changes makes one write.
    pub held: &'a BTreeSet<ObjectKey>,
    pub scope: Scope,
    pub memo: &'a StatusMemo,
}
