//! The reconcile loop: wait for the bell, build the snapshot and the live
//! view, let the core decide, have the executor write, repeat.
//!
//! Coalescing: a change after a quiet spell is reconciled at once; changes
//! that arrive while a pass runs are folded into the next one, so a burst
//! of a thousand edits costs a handful of passes, each writing only what
//! changed. Config Secrets are debounced per Gateway: one written less than
//! [`CONFIG_DEBOUNCE`] ago waits out the rest of it, so a Gateway under a
//! burst gets one write per window while the others are not held back.
//!
//! Endpoint fast path: when only EndpointSlices changed since the last pass,
//! the previous snapshot is reused with fresh endpoints and only the
//! Gateways that send to the changed Services are translated again
//! ([`translate_endpoint_change`]); route, class and policy statuses are left
//! alone, since endpoints cannot change them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use operator_core::provision::Settings;
use operator_core::snapshot::DeployedConfig;
use operator_core::translate::{changed_services, translate_endpoint_change};
use operator_core::writes::{self, Context, Scope, StatusMemo};
use operator_core::{ObjectKey, Snapshot, StatusKind, Translation, translate};
use tracing::{debug, error, info, warn};

use crate::admin::Metrics;
use crate::backoff::Backoff;
use crate::bell::{Bell, Rung, endpoint_only};
use crate::discovery::{self, GatewayApis, discover};
use crate::error::Error;
use crate::executor::Executor;
use crate::leader::Leadership;
use crate::stores::Stores;

/// Shortest time between two writes of one Gateway's config Secret.
pub const CONFIG_DEBOUNCE: Duration = Duration::from_millis(40);

/// How often everything is reconciled even without a change.
const RESYNC: Duration = Duration::from_secs(60);

/// Runs the operator until it is stopped: discovers the Gateway API,
/// watches, reconciles while leader; starts over when Gateway API CRDs
/// change.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    leader: Arc<Leadership>,
) -> Result<(), Error> {
    loop {
        let apis = match discover(&client).await {
            Ok(apis) if apis.complete() => apis,
            Ok(_) => {
                warn!(
                    "the Gateway API CRDs (GatewayClass, Gateway) are not installed; waiting for them"
                );
                metrics.ready.store(false, Ordering::Relaxed);
                discovery::any_change(&client).await;
                continue;
            }
            Err(err) => {
                error!(error = %err, "discovery failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        info!(
            kinds = ?apis.resources.iter().map(|(k, r)| format!("{k}/{}", r.version)).collect::<Vec<_>>(),
            bundle_version = ?apis.bundle_version,
            experimental = ?apis.experimental,
            "watching the served Gateway API kinds"
        );
        let mut controller = Controller::start(
            client.clone(),
            settings.clone(),
            apis.clone(),
            metrics.clone(),
            leader.clone(),
        );
        tokio::select! {
            () = controller.reconcile_forever() => {}
            () = discovery::changed(&client, &apis) => {
                info!("Gateway API CRDs changed; discovering again");
            }
        }
        controller.stop();
        metrics.ready.store(false, Ordering::Relaxed);
    }
}

struct Controller {
    settings: Settings,
    apis: GatewayApis,
    metrics: Arc<Metrics>,
    leader: Arc<Leadership>,
    bell: Arc<Bell>,
    stores: Stores,
    executor: Executor,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Highest config generation written per Gateway, so that generations
    /// only grow even when a config Secret is deleted by hand.
    generations: BTreeMap<ObjectKey, DeployedConfig>,
    /// The last pass's snapshot and translation, for the endpoint fast path.
    last: Option<(Snapshot, Translation)>,
    memo: StatusMemo,
    /// When each Gateway's config Secret was last written, for the debounce.
    config_written: BTreeMap<ObjectKey, Instant>,
    /// The earliest moment a deferred config Secret, or a write waiting
    /// out its backoff, may be written.
    deferred_until: Option<Instant>,
    backoff: Backoff,
}

impl Controller {
    fn start(
        client: Client,
        settings: Settings,
        apis: GatewayApis,
        metrics: Arc<Metrics>,
        leader: Arc<Leadership>,
    ) -> Controller {
        let bell = Arc::new(Bell::default());
        let mut tasks = Vec::new();
        let stores = Stores::start(&client, &apis, &bell, &mut tasks);
        Controller {
            executor: Executor::new(client, apis.clone()),
            settings,
            apis,
            metrics,
            leader,
            bell,
            stores,
            tasks,
            generations: BTreeMap::new(),
            last: None,
            memo: StatusMemo::default(),
            config_written: BTreeMap::new(),
            deferred_until: None,
            backoff: Backoff::default(),
        }
    }

    fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }

    async fn reconcile_forever(&mut self) {
        self.stores.wait_ready().await;
        self.metrics.ready.store(true, Ordering::Relaxed);
        info!("caches synced");
        loop {
            if !self.leader.is_held() {
                // What a follower remembers is stale by the time it leads.
                self.last = None;
                self.bell.take();
            } else {
                let started = Instant::now();
                // A pass never fails as a whole: a refused write waits out its
                // own backoff (see `backoff`), and the rest goes on.
                let (writes, failed) = self.reconcile().await;
                let elapsed = started.elapsed();
                self.metrics.observe_reconcile(elapsed, failed == 0);
                debug!(
                    writes,
                    failed,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "reconciled"
                );
            }
            // Wait for a change, a deferred write or leadership, or resync
            // now and then.
            let resync = tokio::time::Instant::now() + RESYNC;
            let deferred = self
                .deferred_until
                .take()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                () = self.bell.rung() => {}
                () = self.leader.gained() => {}
                () = tokio::time::sleep_until(deferred.unwrap_or(resync)) => {
                    if deferred.is_some() {
                        self.bell.ring(Rung::DeferredWrite);
                    }
                }
            }
        }
    }

    /// One pass: the live view and the snapshot, what the core decides from
    /// them, and the executor's writes. Returns the number of writes made
    /// and of writes refused.
    async fn reconcile(&mut self) -> (usize, usize) {
        let started = Instant::now();
        let rung = self.bell.take();
        let fast = self.last.is_some() && endpoint_only(&rung);
        let (scope, kinds): (Scope, Vec<StatusKind>) = if fast {
            (Scope::Gateways, vec![StatusKind::Gateway])
        } else {
            (Scope::All, StatusKind::all().collect())
        };
        let live = self.stores.live(&kinds);
        let live_done = started.elapsed();
        // Where a pass's time goes, for `pass timing`.
        let (mut snapshot_ms, mut translate_ms) = (0, 0);
        let moment = Instant::now();
        let held: BTreeSet<ObjectKey> = self
            .config_written
            .iter()
            .filter(|(_, written)| **written + CONFIG_DEBOUNCE > moment)
            .map(|(key, _)| key.clone())
            .collect();
        let now = Time(Timestamp::now());
        let context = Context {
            settings: &self.settings,
            now: &now,
            held: &held,
            scope,
            memo: &self.memo,
        };
        let (snapshot, translation, mut writes) = match self.last.take() {
            Some((mut snapshot, previous)) if fast => {
                let before =
                    std::mem::replace(&mut snapshot.endpoint_slices, self.stores.endpoint_slices());
                snapshot.raise_generations(&self.generations);
                let changed = changed_services(&before, &snapshot.endpoint_slices);
                let translation = translate_endpoint_change(&snapshot, &previous, &changed);
                let writes = writes::writes(&translation, &live, &context);
                (snapshot, translation, writes)
            }
            _ => {
                let mut snapshot = self.stores.snapshot(&self.apis);
                snapshot.raise_generations(&self.generations);
                snapshot_ms = (started.elapsed() - live_done).as_millis() as u64;
                let translation = translate(&snapshot);
                translate_ms = (started.elapsed() - live_done).as_millis() as u64 - snapshot_ms;
                let writes = writes::writes(&translation, &live, &context);
                (snapshot, translation, writes)
            }
        };
        let decided = started.elapsed();

        // Written moments ago: fold this change and whatever follows into
        // one write when the window ends.
        for key in &writes.held_configs {
            if let Some(written) = self.config_written.get(key) {
                let due = *written + CONFIG_DEBOUNCE;
                self.deferred_until = Some(self.deferred_until.map_or(due, |d| d.min(due)));
            }
        }
        for key in &writes.configs_written {
            self.config_written.insert(key.clone(), moment);
        }
        for (key, deployed) in &writes.generations {
            let remembered = self.generations.get(key).map_or(0, |d| d.generation);
            if deployed.generation >= remembered {
                self.generations.insert(key.clone(), deployed.clone());
            }
        }
        self.memo.remember(&translation, &mut writes);

        let waiting = self.backoff.hold_back(&mut writes, Instant::now());
        let done = self.executor.execute(&writes).await;
        if done.conflicts > 0 {
            self.bell.ring(Rung::StatusConflict);
        }
        for target in &done.succeeded {
            self.backoff.succeeded(target);
        }
        let written = Instant::now();
        for (target, err) in &done.failed {
            let wait = self.backoff.failed(target.clone(), written);
            warn!(target = ?target, error = %err, retry_ms = wait.as_millis() as u64, "write failed; that object waits, the rest goes on");
        }
        self.backoff.forget_stale(written);
        if let Some(retry) = self.backoff.next_retry(written) {
            self.deferred_until = Some(self.deferred_until.map_or(retry, |d| d.min(retry)));
        }
        self.config_written.retain(|key, written| {
            translation.gateways.contains_key(key) && written.elapsed() < CONFIG_DEBOUNCE
        });
        debug!(
            fast,
            waiting,
            decide_ms = decided.as_millis() as u64,
            live_ms = live_done.as_millis() as u64,
            snapshot_ms,
            translate_ms,
            write_ms = (started.elapsed() - decided).as_millis() as u64,
            "pass timing"
        );
        self.metrics
            .writes
            .fetch_add(done.writes as u64, Ordering::Relaxed);
        if fast {
            self.metrics.endpoint_passes.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics
            .gateways
            .store(translation.gateways.len() as u64, Ordering::Relaxed);
        self.last = Some((snapshot, translation));
        (done.writes, done.failed.len())
    }
}
