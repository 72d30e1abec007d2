//! Backoff per object: a write the API server refused (an object it finds
//! invalid, a status over its size limit, a webhook that denies it) waits
//! before it is tried again, doubling each time, while every other write
//! goes ahead at once. No failure delays the pass or any other object.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use operator_core::StatusTarget;
use operator_core::writes::{Owned, Writes};

/// The first wait after a failure, and the longest.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
pub const LONGEST_RETRY: Duration = Duration::from_secs(300);

/// One write's target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum WriteTarget {
    /// An object applied or deleted.
    Object(Owned),
    /// An object's status.
    Status(StatusTarget),
}

#[derive(Debug, Clone, Copy)]
struct Failing {
    failures: u32,
    retry_at: Instant,
}

/// The targets whose last write failed, and when each may be tried again.
#[derive(Debug, Default)]
pub struct Backoff {
    failing: BTreeMap<WriteTarget, Failing>,
}

impl Backoff {
    /// Whether `target` may be written at `now`.
    pub fn due(&self, target: &WriteTarget, now: Instant) -> bool {
        self.failing.get(target).is_none_or(|f| f.retry_at <= now)
    }

    /// Records a failed write; returns how long the target now waits.
    pub fn failed(&mut self, target: WriteTarget, now: Instant) -> Duration {
        let failures = self.failing.get(&target).map_or(0, |f| f.failures) + 1;
        let wait = FIRST_RETRY
            .saturating_mul(1 << (failures - 1).min(16))
            .min(LONGEST_RETRY);
        self.failing.insert(
            target,
            Failing {
                failures,
                retry_at: now + wait,
            },
        );
        wait
    }

    /// Records a write that went through.
    pub fn succeeded(&mut self, target: &WriteTarget) {
        self.failing.remove(target);
    }

    /// The earliest moment after `now` a waiting target may be tried again.
    /// Targets already due are not counted: their write is retried by the
    /// next pass that still wants it, and waking for them would spin.
    pub fn next_retry(&self, now: Instant) -> Option<Instant> {
        self.failing
            .values()
            .map(|f| f.retry_at)
            .filter(|at| *at > now)
            .min()
    }

    /// Takes out of `writes` what waits at `now`, and returns how many
    /// writes wait. What is taken out is decided again by a later pass, from
    /// what the cluster then holds.
    pub fn hold_back(&self, writes: &mut Writes, now: Instant) -> usize {
        let before = writes.apply.len() + writes.delete.len() + writes.statuses.len();
        writes.apply.retain(|desired| {
            self.due(
                &WriteTarget::Object(Owned {
                    kind: desired.kind,
                    key: desired.key.clone(),
                }),
                now,
            )
        });
        writes
            .delete
            .retain(|owned| self.due(&WriteTarget::Object(owned.clone()), now));
        writes
            .statuses
            .retain(|patch| self.due(&WriteTarget::Status(patch.target.clone()), now));
        before - (writes.apply.len() + writes.delete.len() + writes.statuses.len())
    }

    /// Forgets targets no pass has tried for a long time (objects deleted
    /// since), so the map cannot grow without bound.
    pub fn forget_stale(&mut self, now: Instant) {
        self.failing
            .retain(|_, f| now.saturating_duration_since(f.retry_at) < LONGEST_RETRY * 2);
    }
}

#[cfg(test)]
mod tests {
    use operator_core::provision::{Desired, ProvisionedKind};
    use operator_core::writes::StatusPatch;
    use operator_core::{ObjectKey, StatusKind};

    use super::*;

    fn status(name: &str) -> WriteTarget {
        WriteTarget::Status(StatusTarget::new(
            StatusKind::Gateway,
            ObjectKey::new("apps", name),
        ))
    }

    #[test]
    fn each_failure_doubles_the_wait_up_to_the_longest_and_success_clears_it() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        let waits: Vec<Duration> = (0..12)
            .map(|_| backoff.failed(status("edge"), now))
            .collect();
        assert_eq!(waits[0], FIRST_RETRY);
        assert_eq!(waits[1], FIRST_RETRY * 2);
        assert_eq!(waits[2], FIRST_RETRY * 4);
        assert_eq!(*waits.last().expect("waits"), LONGEST_RETRY);
        assert!(!backoff.due(&status("edge"), now));
        assert!(backoff.due(&status("edge"), now + LONGEST_RETRY));
        assert!(backoff.due(&status("other"), now), "others never wait");
        backoff.succeeded(&status("edge"));
        assert!(backoff.due(&status("edge"), now));
        assert_eq!(backoff.next_retry(now), None);
    }

    #[test]
    fn only_the_waiting_writes_are_held_back() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        let secret = Owned {
            kind: ProvisionedKind::Secret,
            key: ObjectKey::new("apps", "edge-portcullis"),
        };
        backoff.failed(WriteTarget::Object(secret.clone()), now);
        backoff.failed(status("stuck"), now);
        let desired = |kind, name: &str| Desired {
            kind,
            key: ObjectKey::new("apps", name),
            body: serde_json::Value::Null,
            hash: String::new(),
        };
        let patch = |name: &str| StatusPatch {
            target: StatusTarget::new(StatusKind::Gateway, ObjectKey::new("apps", name)),
            resource_version: "1".into(),
            status: serde_json::Value::Null,
        };
        let mut writes = Writes {
            apply: vec![
                desired(ProvisionedKind::Secret, "edge-portcullis"),
                desired(ProvisionedKind::Deployment, "edge-portcullis"),
            ],
            statuses: vec![patch("stuck"), patch("fine")],
            ..Writes::default()
        };
        assert_eq!(backoff.hold_back(&mut writes, now), 2);
        assert_eq!(writes.apply.len(), 1);
        assert_eq!(writes.apply[0].kind, ProvisionedKind::Deployment);
        assert_eq!(writes.statuses.len(), 1);
        assert_eq!(writes.statuses[0].target.key.name, "fine");
        assert_eq!(backoff.next_retry(now), Some(now + FIRST_RETRY));
        assert_eq!(
            backoff.next_retry(now + FIRST_RETRY),
            None,
            "a due target wakes nobody"
        );

        let later = now + FIRST_RETRY;
        let mut again = Writes {
            statuses: vec![patch("stuck")],
            ..Writes::default()
        };
        assert_eq!(backoff.hold_back(&mut again, later), 0, "due again");
        backoff.forget_stale(later + LONGEST_RETRY * 3);
        assert!(backoff.failing.is_empty());
    }
}
