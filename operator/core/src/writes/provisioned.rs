//! Provisioned objects to apply and delete.

use std::collections::BTreeSet;

use super::batch::Writes;
use super::context::Context;
use super::live::{Live, Owned};
use crate::keys::ObjectKey;
use crate::provision::{self, ProvisionedKind};
use crate::snapshot::DeployedConfig;
use crate::translate::Translation;

/// Provisioned objects and config Secrets, Gateway by Gateway, and the
/// owned objects no Gateway wants any more.
pub(super) fn provisioned(
    translation: &Translation,
    live: &Live,
    context: &Context<'_>,
    out: &mut Writes,
) {
    let mut wanted: BTreeSet<Owned> = BTreeSet::new();
    let live_hash = |kind: ProvisionedKind, key: &ObjectKey| {
        live.owned
            .get(&Owned {
                kind,
                key: key.clone(),
            })
            .and_then(|state| state.hash.as_deref())
    };
    for (gateway, plan) in &translation.gateways {
        if !plan.provision {
            continue;
        }
        for object in provision::objects(gateway, plan, context.settings) {
            wanted.insert(Owned {
                kind: object.kind,
                key: object.key.clone(),
            });
            if live_hash(object.kind, &object.key) != Some(object.hash.as_str()) {
                out.apply.push(object);
            }
        }
        let config = provision::provisioned_key(gateway, &plan.class);
        wanted.insert(Owned {
            kind: ProvisionedKind::Secret,
            key: config.clone(),
        });
        // Compared before encoding: most passes change no config, and
        // validating and compressing one costs more than the rest.
        if live_hash(ProvisionedKind::Secret, &config)
            != Some(provision::config_secret_hash(plan).as_str())
        {
            if context.held.contains(gateway) {
                out.held_configs.push(gateway.clone());
                continue;
            }
            match provision::config_secret_within(gateway, plan, context.settings.max_config_bytes)
            {
                Ok(secret) => {
                    out.apply.push(secret);
                    out.configs_written.push(gateway.clone());
                }
                Err(error) => {
                    out.refused.push((gateway.clone(), error));
                    continue;
                }
            }
        }
        out.generations.push((
            gateway.clone(),
            DeployedConfig {
                generation: plan.generation,
                hash: plan.config_hash.clone(),
            },
        ));
    }
    for (owned, state) in &live.owned {
        if !state.deleting && !wanted.contains(owned) {
            out.delete.push(owned.clone());
        }
    }
}
