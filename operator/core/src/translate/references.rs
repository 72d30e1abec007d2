//! ReferenceGrant: whether an object may refer to one in another namespace.

use crate::snapshot::Snapshot;

/// The referring side of a reference: `(group, kind, namespace)`.
pub(super) type Referrer<'a> = (&'a str, &'a str, &'a str);
/// The referred-to side: `(group, kind, namespace, name)`.
pub(super) type Referent<'a> = (&'a str, &'a str, &'a str, &'a str);

/// Whether a ReferenceGrant in the target's namespace lets objects of
/// `from` refer to `to`.
pub(super) fn reference_allowed(snapshot: &Snapshot, from: Referrer<'_>, to: Referent<'_>) -> bool {
    let (from_group, from_kind, from_namespace) = from;
    let (to_group, to_kind, to_namespace, to_name) = to;
    snapshot.reference_grants.iter().any(|grant| {
        grant.metadata.namespace.as_deref() == Some(to_namespace)
            && grant.spec.from.iter().any(|f| {
                f.group == from_group && f.kind == from_kind && f.namespace == from_namespace
            })
            && grant.spec.to.iter().any(|t| {
                t.group == to_group
                    && t.kind == to_kind
                    && t.name.as_deref().is_none_or(|name| name == to_name)
            })
    })
}
