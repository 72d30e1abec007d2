//! The proxy's status, reported through its own Pod's condition
//! [`CONFIG_APPLIED_CONDITION`], which the Pod also carries as a readiness gate: a
//! proxy that has not applied its config receives no traffic, and the
//! operator folds these conditions into the Gateway's status.
//!
//! Every message about an applied config starts with `generation N`
//! ([`Generation`]), N being the generation serving, so the operator can
//! tell which one is live:
//!
//! | outcome | status | reason | message |
//! |---|---|---|---|
//! | applied | True | `Applied` | `generation 7 applied: 2 listener(s) serving` |
//! | applied, a port not bound | False | `ListenerBindFailed` | `generation 7: listener https: Address already in use (os error 98)` |
//! | refused, nothing serving | False | `InvalidConfig` / `InvalidCertificate` | `generation 8: <error>` (`<error>` alone when the document does not decode) |
//! | no Secret or key, nothing serving | False | `ConfigMissing` | `config Secret gw not found` |
//! | refused or missing while N serves | N's | N's | `generation 7 applied; generation 8 refused: <error>` |
//!
//! A refusal never flips the condition of the generation still serving:
//! the old config keeps serving, so the Pod stays as ready as it was.
//!
//! [`Tracker`] turns outcomes into conditions (pure); [`Reporter`] writes
//! them in the background, so that the config loop never waits for the API
//! server.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use proxy_config::{CONFIG_APPLIED_CONDITION, Generation};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::server::ApplyReport;

/// The config is live and every listener is bound.
pub const REASON_APPLIED: &str = "Applied";
/// The config is live but some listener's port could not be bound.
pub const REASON_LISTENER_BIND_FAILED: &str = "ListenerBindFailed";
/// A listener's certificate, key or client CAs were refused.
pub const REASON_INVALID_CERTIFICATE: &str = "InvalidCertificate";
/// The document does not decode, validate or compile.
pub const REASON_INVALID_CONFIG: &str = "InvalidConfig";
/// There is no config to read: the Secret or its key is missing.
pub const REASON_CONFIG_MISSING: &str = "ConfigMissing";
/// Field manager of the proxy's server-side apply on `pods/status`.
pub const FIELD_MANAGER: &str = "portcullis-proxy";

/// Longest message written; validation errors can be many.
const MAX_MESSAGE_BYTES: usize = 4096;
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The condition to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Status `True` or `False`.
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    pub fn status(&self) -> &'static str {
        if self.ready { "True" } else { "False" }
    }
}

/// What one turn of the config loop came to.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// The server applied a document.
    Applied(&'a ApplyReport),
    /// A document was refused (its generation when known), or none could
    /// be read.
    Refused {
        generation: Option<u64>,
        error: &'a Error,
    },
}

/// Folds outcomes into the condition to publish. It remembers the
/// condition of the generation serving, so that refusals can be reported
/// without misreporting what is live.
#[derive(Debug, Default)]
pub struct Tracker {
    live: Option<Live>,
}

#[derive(Debug)]
struct Live {
    condition: Condition,
    /// What refusals are appended to: `generation N applied`, or the whole
    /// message of a generation applied with listeners down.
    head: String,
}

impl Tracker {
    /// The condition after `outcome`, or `None` when it changes nothing to
    /// report (the API server could not be watched, a file could not be
    /// read: both retried).
    pub fn observe(&mut self, outcome: Outcome<'_>) -> Option<Condition> {
        match outcome {
            Outcome::Applied(report) => {
                let live = applied(report);
                let condition = live.condition.clone();
                self.live = Some(live);
                Some(condition)
            }
            Outcome::Refused { generation, error } => {
                let generation = generation.or_else(|| error.generation());
                refused(self.live.as_ref(), generation, error)
            }
        }
    }
}

fn applied(report: &ApplyReport) -> Live {
    let generation = report.generation;
    if report.failed_listeners.is_empty() {
        let head = format!("{} applied", Generation(generation));
        return Live {
            condition: Condition {
                ready: true,
                reason: REASON_APPLIED,
                message: format!("{head}: {} listener(s) serving", report.listeners),
            },
            head,
        };
    }
    // Sorted, so that the same failures give the same message.
    let mut failed: Vec<&(String, String)> = report.failed_listeners.iter().collect();
    failed.sort();
    let listeners: Vec<String> = failed
        .iter()
        .map(|(name, reason)| format!("listener {name}: {reason}"))
        .collect();
    let message = truncate(format!(
        "{}: {}",
        Generation(generation),
        listeners.join("; ")
    ));
    Live {
        condition: Condition {
            ready: false,
            reason: REASON_LISTENER_BIND_FAILED,
            message: message.clone(),
        },
        head: message,
    }
}

fn refused(live: Option<&Live>, generation: Option<u64>, error: &Error) -> Option<Condition> {
    let reason = match error {
        // Transient, retried by the source; nothing new to say.
        Error::Watch(_) | Error::Io { .. } => return None,
        Error::ConfigMissing(_) => REASON_CONFIG_MISSING,
        Error::ListenerTls { .. } | Error::Certificate { .. } => REASON_INVALID_CERTIFICATE,
        Error::Config(_) | Error::Load(_) | Error::Invalid { .. } => REASON_INVALID_CONFIG,
    };
    let Some(live) = live else {
        let message = match generation {
            Some(generation) => format!("{}: {error}", Generation(generation)),
            None => error.to_string(),
        };
        return Some(Condition {
            ready: false,
            reason,
            message: truncate(message),
        });
    };
    let message = match (generation, error) {
        (Some(generation), _) => {
            Generation(generation).refused_while_serving(&live.head, &error.to_string())
        }
        (None, Error::ConfigMissing(_)) => format!("{}; {error}", live.head),
        (None, _) => format!("{}; refused: {error}", live.head),
    };
    Some(Condition {
        message: truncate(message),
        ..live.condition.clone()
    })
}

/// Cuts `message` to [`MAX_MESSAGE_BYTES`] on a character boundary.
fn truncate(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push('…');
    message
}

/// The proxy's own Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl PodRef {
    /// Parses `NAMESPACE/NAME`.
    pub fn parse(reference: &str) -> Result<Self, Error> {
        match reference.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(Self {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(Error::Config(format!(
                "pod reference {reference:?} is not NAMESPACE/NAME"
            ))),
        }
    }

    /// `--pod` (or `PORTCULLIS_POD`) when given, else the downward API's
    /// `POD_NAMESPACE` and `POD_NAME` when both are set, else none.
    pub fn resolve(
        flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, Error> {
        if let Some(reference) = flag {
            return Self::parse(reference).map(Some);
        }
        let set = |key: &str| env(key).filter(|value| !value.is_empty());
        Ok(match (set("POD_NAMESPACE"), set("POD_NAME")) {
            (Some(namespace), Some(name)) => Some(Self { namespace, name }),
            _ => None,
        })
    }
}

/// The server-side apply body: only the fields the proxy owns. Pod status
/// conditions merge by `type`, so the kubelet's own are left alone.
pub fn apply_patch(
    pod: &PodRef,
    condition: &Condition,
    last_transition: Time,
    observed_generation: Option<i64>,
) -> serde_json::Value {
    let condition = PodCondition {
        type_: CONFIG_APPLIED_CONDITION.to_owned(),
        status: condition.status().to_owned(),
        reason: Some(condition.reason.to_owned()),
        message: Some(condition.message.clone()),
        last_transition_time: Some(last_transition),
        observed_generation,
        last_probe_time: None,
    };
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": pod.name, "namespace": pod.namespace },
        "status": { "conditions": [condition] },
    })
}

/// Writes the latest condition to the Pod from a background task, retrying
/// with backoff until it is written; only the latest value matters.
#[derive(Debug)]
pub struct Reporter {
    desired: watch::Sender<Option<Condition>>,
}

impl Reporter {
    /// Starts the writer on the current runtime.
    pub fn start(client: kube::Client, pod: PodRef) -> Self {
        let (desired, receiver) = watch::channel(None);
        let api = Api::namespaced(client, &pod.namespace);
        tokio::spawn(write_conditions(api, pod, receiver));
        Self { desired }
    }

    /// Publishes `condition`; returns at once.
    pub fn report(&self, condition: Condition) {
        self.desired.send_if_modified(|current| {
            if current.as_ref() == Some(&condition) {
                return false;
            }
            *current = Some(condition);
            true
        });
    }
}

async fn write_conditions(
    api: Api<Pod>,
    pod: PodRef,
    mut desired: watch::Receiver<Option<Condition>>,
) {
    let mut written: Option<Condition> = None;
    // When the status last flipped; seeded from the Pod, so that a
    // restarted proxy keeps the time its predecessor wrote.
    let mut transition: Option<(bool, Time)> = None;
    let mut pod_generation: Option<i64> = None;
    let mut seeded = false;
    while desired.changed().await.is_ok() {
        let mut retry = FIRST_RETRY;
        let mut attempt: u32 = 0;
        loop {
            let Some(condition) = desired.borrow_and_update().clone() else {
                break;
            };
            if written.as_ref() == Some(&condition) {
                break;
            }
            if !seeded {
                match tokio::time::timeout(REQUEST_TIMEOUT, api.get_status(&pod.name)).await {
                    Ok(Ok(current)) => {
                        seeded = true;
                        pod_generation = current.metadata.generation;
                        transition = current_transition(&current);
                    }
                    // Not allowed to read it, or no such Pod: the write says more.
                    Ok(Err(kube::Error::Api(err))) => {
                        seeded = true;
                        debug!(%pod, error = %err, "cannot read the Pod's current condition");
                    }
                    Ok(Err(err)) => debug!(%pod, error = %err, "cannot read the Pod"),
                    Err(_) => debug!(%pod, "reading the Pod timed out"),
                }
            }
            let since = match &transition {
                Some((ready, time)) if *ready == condition.ready => time.clone(),
                _ => Time(Timestamp::now()),
            };
            transition = Some((condition.ready, since.clone()));
            let patch = apply_patch(&pod, &condition, since, pod_generation);
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let result = tokio::time::timeout(
                REQUEST_TIMEOUT,
                api.patch_status(&pod.name, &params, &Patch::Apply(&patch)),
            )
            .await;
            match result {
                Ok(Ok(updated)) => {
                    pod_generation = updated.metadata.generation.or(pod_generation);
                    info!(
                        %pod,
                        status = condition.status(),
                        reason = condition.reason,
                        message = %condition.message,
                        attempts = attempt + 1,
                        "Pod condition written"
                    );
                    written = Some(condition);
                    break;
                }
                Ok(Err(err)) => warn!(
                    %pod, attempt, retry_in = ?retry, error = %err,
                    "cannot write the Pod condition"
                ),
                Err(_) => warn!(
                    %pod, attempt, retry_in = ?retry,
                    "writing the Pod condition timed out"
                ),
            }
            attempt = attempt.saturating_add(1);
            // A newer condition cuts the wait short.
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                changed = desired.changed() => if changed.is_err() { return },
            }
            retry = (retry * 2).min(MAX_RETRY);
        }
    }
}

/// The status and transition time of the condition already on the Pod.
fn current_transition(pod: &Pod) -> Option<(bool, Time)> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == CONFIG_APPLIED_CONDITION)?;
    Some((
        condition.status == "True",
        condition.last_transition_time.clone()?,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    fn report(generation: u64, listeners: usize, failed: &[(&str, &str)]) -> ApplyReport {
        ApplyReport {
            generation,
            listeners,
            failed_listeners: failed
                .iter()
                .map(|(name, reason)| ((*name).to_owned(), (*reason).to_owned()))
                .collect(),
        }
    }

    fn invalid(generation: u64) -> Error {
        let errors = proxy_config::ValidationErrors(vec![proxy_config::ValidationError {
            path: "hash".into(),
            message: "does not match the content".into(),
        }]);
        Error::Invalid {
            generation,
            source: errors,
        }
    }

    fn undecodable() -> Error {
        let error = proxy_config::load(b"not a config").expect_err("garbage");
        Error::Load(error)
    }

    fn bad_certificate() -> Error {
        Error::ListenerTls {
            listener: "https".into(),
            source: Box::new(Error::Certificate {
                name: "cert-a".into(),
                reason: "no private key".into(),
            }),
        }
    }

    /// One turn of the loop: what happened.
    enum Step {
        Applied(ApplyReport),
        Refused(Option<u64>, Error),
    }

    /// A sequence of turns, each with the condition expected after it.
    type Steps = Vec<(Step, Option<Condition>)>;

    type Env = &'static [(&'static str, &'static str)];

    fn condition(ready: bool, reason: &'static str, message: &str) -> Option<Condition> {
        Some(Condition {
            ready,
            reason,
            message: message.to_owned(),
        })
    }

    fn run(steps: Steps) {
        let mut tracker = Tracker::default();
        for (index, (step, expected)) in steps.into_iter().enumerate() {
            let got = match &step {
                Step::Applied(report) => tracker.observe(Outcome::Applied(report)),
                Step::Refused(generation, error) => tracker.observe(Outcome::Refused {
                    generation: *generation,
                    error,
                }),
            };
            assert_eq!(got, expected, "step {index}");
        }
    }

    #[test]
    fn status_follows_apply_outcomes() {
        let garbage = undecodable().to_string();
        let cases: Vec<(&str, Steps)> = vec![
            (
                "applied",
                vec![(
                    Step::Applied(report(7, 2, &[])),
                    condition(
                        true,
                        "Applied",
                        "generation 7 applied: 2 listener(s) serving",
                    ),
                )],
            ),
            (
                "listeners that cannot bind are all named, sorted",
                vec![(
                    Step::Applied(report(
                        3,
                        3,
                        &[("web", "Address in use"), ("api", "Permission denied")],
                    )),
                    condition(
                        false,
                        "ListenerBindFailed",
                        "generation 3: listener api: Permission denied; listener web: Address in use",
                    ),
                )],
            ),
            (
                "invalid with nothing serving",
                vec![(
                    Step::Refused(None, invalid(4)),
                    condition(
                        false,
                        "InvalidConfig",
                        "generation 4: 1 problem(s) in config: hash: does not match the content",
                    ),
                )],
            ),
            (
                "undecodable with nothing serving: no generation",
                vec![(
                    Step::Refused(None, undecodable()),
                    condition(false, "InvalidConfig", &garbage),
                )],
            ),
            (
                "compile errors carry the document's generation",
                vec![(
                    Step::Refused(Some(5), Error::Config("no backend named \"b\"".into())),
                    condition(
                        false,
                        "InvalidConfig",
                        "generation 5: config: no backend named \"b\"",
                    ),
                )],
            ),
            (
                "a refused certificate names its listener",
                vec![(
                    Step::Refused(Some(6), bad_certificate()),
                    condition(
                        false,
                        "InvalidCertificate",
                        "generation 6: listener https: certificate \"cert-a\": no private key",
                    ),
                )],
            ),
            (
                "missing with nothing serving",
                vec![(
                    Step::Refused(
                        None,
                        Error::ConfigMissing("config Secret gw not found".into()),
                    ),
                    condition(false, "ConfigMissing", "config Secret gw not found"),
                )],
            ),
            (
                "watch errors report nothing",
                vec![
                    (
                        Step::Refused(None, Error::Watch("connection refused".into())),
                        None,
                    ),
                    (
                        Step::Applied(report(1, 1, &[])),
                        condition(
                            true,
                            "Applied",
                            "generation 1 applied: 1 listener(s) serving",
                        ),
                    ),
                    (
                        Step::Refused(None, Error::Watch("connection refused".into())),
                        None,
                    ),
                ],
            ),
            (
                "a refusal keeps the serving generation's condition",
                vec![
                    (
                        Step::Applied(report(2, 1, &[])),
                        condition(
                            true,
                            "Applied",
                            "generation 2 applied: 1 listener(s) serving",
                        ),
                    ),
                    (
                        Step::Refused(None, invalid(3)),
                        condition(
                            true,
                            "Applied",
                            "generation 2 applied; generation 3 refused: 1 problem(s) in config: hash: does not match the content",
                        ),
                    ),
                    (
                        Step::Refused(Some(4), bad_certificate()),
                        condition(
                            true,
                            "Applied",
                            "generation 2 applied; generation 4 refused: listener https: certificate \"cert-a\": no private key",
                        ),
                    ),
                    (
                        Step::Refused(None, undecodable()),
                        condition(
                            true,
                            "Applied",
                            &format!("generation 2 applied; refused: {garbage}"),
                        ),
                    ),
                    (
                        Step::Refused(
                            None,
                            Error::ConfigMissing("config Secret gw was deleted".into()),
                        ),
                        condition(
                            true,
                            "Applied",
                            "generation 2 applied; config Secret gw was deleted",
                        ),
                    ),
                    (
                        Step::Applied(report(5, 1, &[])),
                        condition(
                            true,
                            "Applied",
                            "generation 5 applied: 1 listener(s) serving",
                        ),
                    ),
                ],
            ),
            (
                "a refusal keeps a serving generation's failed listeners",
                vec![
                    (
                        Step::Applied(report(2, 2, &[("web", "Address in use")])),
                        condition(
                            false,
                            "ListenerBindFailed",
                            "generation 2: listener web: Address in use",
                        ),
                    ),
                    (
                        Step::Refused(None, invalid(3)),
                        condition(
                            false,
                            "ListenerBindFailed",
                            "generation 2: listener web: Address in use; generation 3 refused: 1 problem(s) in config: hash: does not match the content",
                        ),
                    ),
                    (
                        Step::Applied(report(4, 2, &[])),
                        condition(
                            true,
                            "Applied",
                            "generation 4 applied: 2 listener(s) serving",
                        ),
                    ),
                ],
            ),
        ];
        for (name, steps) in cases {
            println!("case: {name}");
            run(steps);
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let reason = "é".repeat(MAX_MESSAGE_BYTES);
        let got = Tracker::default()
            .observe(Outcome::Applied(&report(1, 1, &[("web", &reason)])))
            .expect("condition");
        assert!(got.message.len() <= MAX_MESSAGE_BYTES);
        assert!(got.message.starts_with("generation 1: listener web: é"));
        assert!(got.message.ends_with('…'));
    }

    #[test]
    fn pod_references() {
        let env = |pairs: Env| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let pod = |namespace: &str, name: &str| {
            Some(PodRef {
                namespace: namespace.into(),
                name: name.into(),
            })
        };
        let downward: &[(&str, &str)] = &[("POD_NAMESPACE", "gw"), ("POD_NAME", "proxy-0")];
        let cases: Vec<(Option<&str>, Env, Option<PodRef>)> = vec![
            (Some("ns/p"), &[], pod("ns", "p")),
            (Some("ns/p"), downward, pod("ns", "p")),
            (None, downward, pod("gw", "proxy-0")),
            (None, &[("POD_NAME", "proxy-0")], None),
            (None, &[("POD_NAMESPACE", "gw"), ("POD_NAME", "")], None),
            (None, &[], None),
        ];
        for (flag, pairs, expected) in cases {
            let got = PodRef::resolve(flag, env(pairs)).expect("resolves");
            assert_eq!(got, expected, "{flag:?} {pairs:?}");
        }
        for bad in ["ns", "/p", "ns/", "a/b/c", ""] {
            assert!(PodRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_patch_carries_only_the_proxys_condition() {
        let pod = PodRef {
            namespace: "gw".into(),
            name: "proxy-0".into(),
        };
        let condition = Condition {
            ready: true,
            reason: REASON_APPLIED,
            message: "generation 1 applied: 1 listener(s) serving".into(),
        };
        let since = Time("2026-01-02T03:04:05Z".parse().expect("timestamp"));
        let patch = apply_patch(&pod, &condition, since, Some(3));
        assert_eq!(
            patch,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "proxy-0", "namespace": "gw"},
                "status": {"conditions": [{
                    "type": "gateway.portcullis.io/ConfigApplied",
                    "status": "True",
                    "reason": "Applied",
                    "message": "generation 1 applied: 1 listener(s) serving",
                    "lastTransitionTime": "2026-01-02T03:04:05Z",
                    "observedGeneration": 3,
                }]},
            })
        );
    }
}
