//! `bundle/`: the OLM bundle (registry+v1) for OpenShift and other OLM
//! clusters: the ClusterServiceVersion and our own CRD only, never a Gateway
//! API CRD (OpenShift 4.19+ owns those and denies writes to them; the CSV
//! names the ones it needs under `spec.nativeAPIs`).

use crds::{
    AccessLog, AccessLogFormat, LogLevel, Logging, ProxyConfig, ProxyConfigSpec, ServiceSettings,
    ServiceType,
};
use kube::CustomResourceExt;
use operator::rbac::Scope;
use serde_json::{Value, json};

use crate::file::{Error, File};
use crate::model::{self, CHANNEL, NAME, NAMESPACE, PACKAGE, REPOSITORY, VERSION};
use crate::render::{header, json as to_json, yaml};

pub const CSV_PATH: &str = "bundle/manifests/portcullis.clusterserviceversion.yaml";
pub const CRD_PATH: &str = "bundle/manifests/gateway.portcullis.io_proxyconfigs.yaml";
pub const ANNOTATIONS_PATH: &str = "bundle/metadata/annotations.yaml";
pub const DOCKERFILE_PATH: &str = "bundle/bundle.Dockerfile";

/// The OpenShift releases the bundle targets: 4.19 is the first whose
/// Ingress Operator ships the Gateway API CRDs.
const OPENSHIFT_VERSIONS: &str = "v4.19";

pub const ICON_SVG: &str = include_str!("icon.svg");

pub const DISPLAY_NAME: &str = "Portcullis";
pub const SHORT_DESCRIPTION: &str = "Gateway API implementation: one lean proxy per Gateway, and status that says why a route works or not.";

const DESCRIPTION: &str = "\
Portcullis implements the Kubernetes Gateway API. For every Gateway of a GatewayClass whose
controllerName is `portcullis.io/gateway-controller`, the operator runs a dedicated proxy
Deployment with its Service, and reports through the spec's status conditions exactly why a
route is or is not attached.

## What it serves
- HTTPRoute and GRPCRoute: matches, filters, weighted backends, redirects and rewrites.
- TLS: edge termination, passthrough (TLSRoute) and re-encryption to backends
  (BackendTLSPolicy), client certificates.
- TCPRoute and UDPRoute.

## Gateway API versions
The Gateway API CRDs are not part of this bundle: on OpenShift 4.19 and later the cluster owns
them, elsewhere install the upstream standard channel first. The operator discovers which kinds
and versions are served (v1.2.1 to v1.6.1) and reports a missing kind through status instead
of failing.

## After installing
Create the GatewayClass (`olm/examples/gatewayclass.yaml` in the repository), then Gateways
that name it. A ProxyConfig, referenced by the class or by one Gateway, sets replicas,
autoscaling, resources, the Service type and logging of the proxies.

The operator never touches GatewayClasses of other controllers, such as OpenShift's
`openshift-default`, and refuses to run in `openshift-ingress`.
";

/// A ProxyConfig for the console's "create" form and `alm-examples`.
fn example() -> ProxyConfig {
    ProxyConfig::new(
        "example",
        ProxyConfigSpec {
            replicas: Some(2),
            service: Some(ServiceSettings {
                service_type: Some(ServiceType::LoadBalancer),
                ..ServiceSettings::default()
            }),
            logging: Some(Logging {
                level: Some(LogLevel::Info),
                access_log: Some(AccessLog {
                    enabled: true,
                    format: Some(AccessLogFormat::Json),
                }),
            }),
            ..ProxyConfigSpec::default()
        },
    )
}

fn descriptor(path: &str, display: &str, description: &str, x: &[&str]) -> Value {
    json!({
        "path": path,
        "displayName": display,
        "description": description,
        "x-descriptors": x,
    })
}

/// The owned CRD as the console shows it.
pub fn crd_description() -> Value {
    let ui = |kind: &str| format!("urn:alm:descriptor:com.tectonic.ui:{kind}");
    json!({
        "name": format!("proxyconfigs.{}", crds::GROUP),
        "version": "v1alpha1",
        "kind": "ProxyConfig",
        "displayName": "Proxy Config",
        "description": "How the operator runs the proxy of a Gateway: replicas, autoscaling, resources, Service, scheduling, logging and shutdown. Referenced by a GatewayClass (defaults for its Gateways) or by one Gateway.",
        "specDescriptors": [
            descriptor("replicas", "Replicas", "Number of proxy Pods; leave unset with autoscaling.", &[&ui("podCount")]),
            descriptor("autoscaling.minReplicas", "Minimum replicas", "Fewest proxy Pods the autoscaler keeps.", &[&ui("number")]),
            descriptor("autoscaling.maxReplicas", "Maximum replicas", "Most proxy Pods the autoscaler runs.", &[&ui("number")]),
            descriptor("autoscaling.targetCPUUtilizationPercentage", "Target CPU utilization", "Average CPU use, in percent of the request, the autoscaler aims for.", &[&ui("number")]),
            descriptor("container.image", "Proxy image", "Image to run instead of the operator's default, for example a mirror.", &[&ui("text")]),
            descriptor("container.resources", "Resources", "CPU and memory requests and limits of the proxy container.", &[&ui("resourceRequirements")]),
            descriptor("service.type", "Service type", "How the Gateway is exposed.", &[
                &ui("select:LoadBalancer"), &ui("select:NodePort"), &ui("select:ClusterIP"),
            ]),
            descriptor("logging.level", "Log level", "Level of the proxy's own log.", &[
                &ui("select:error"), &ui("select:warn"), &ui("select:info"), &ui("select:debug"), &ui("select:trace"),
            ]),
            descriptor("logging.accessLog.enabled", "Access log", "One line per request or connection on standard output.", &[&ui("booleanSwitch")]),
        ],
        // The kinds a ProxyConfig shapes (the objects are owned by the
        // Gateways that use it).
        "resources": [
            {"kind": "Deployment", "version": "apps/v1", "name": ""},
            {"kind": "Service", "version": "v1", "name": ""},
            {"kind": "HorizontalPodAutoscaler", "version": "autoscaling/v2", "name": ""},
            {"kind": "PodDisruptionBudget", "version": "policy/v1", "name": ""},
        ],
        "statusDescriptors": [
            descriptor("conditions", "Conditions", "Whether the operator could apply this ProxyConfig, and if not, why.", &["urn:alm:descriptor:io.kubernetes.conditions"]),
        ],
    })
}

/// Gateway API kinds the operator needs the cluster to serve. OLM installs
/// the operator only where they are, and never installs them itself: they
/// are listed here, not bundled and not `required`. Only what every
/// supported release (v1.2.1, which OpenShift 4.19 pins, to v1.6.1) serves
/// in its standard channel, at a version served by all of them; the other
/// kinds (TLSRoute, TCPRoute, UDPRoute, BackendTLSPolicy) are optional and
/// discovered at run time.
pub fn native_apis() -> Value {
    json!([
        {"group": operator_core::names::GATEWAY_GROUP, "version": "v1", "kind": "GatewayClass"},
        {"group": operator_core::names::GATEWAY_GROUP, "version": "v1", "kind": "Gateway"},
        {"group": operator_core::names::GATEWAY_GROUP, "version": "v1", "kind": "HTTPRoute"},
        {"group": operator_core::names::GATEWAY_GROUP, "version": "v1", "kind": "GRPCRoute"},
        {"group": operator_core::names::GATEWAY_GROUP, "version": "v1beta1", "kind": "ReferenceGrant"},
    ])
}

pub fn icon() -> Result<Value, Error> {
    let data = to_json(
        "icon",
        &k8s_openapi::ByteString(ICON_SVG.as_bytes().to_vec()),
    )?;
    Ok(json!([{"base64data": data, "mediatype": "image/svg+xml"}]))
}

pub fn install_modes() -> Value {
    json!([
        {"type": "OwnNamespace", "supported": false},
        {"type": "SingleNamespace", "supported": false},
        {"type": "MultiNamespace", "supported": false},
        {"type": "AllNamespaces", "supported": true},
    ])
}

pub fn links() -> Value {
    json!([
        {"name": "Source", "url": REPOSITORY},
        {"name": "Install", "url": format!("{REPOSITORY}/blob/main/docs/install.md")},
        {"name": "Gateway API", "url": "https://gateway-api.sigs.k8s.io/"},
    ])
}

pub fn maintainers() -> Value {
    json!([{"name": "Portcullis maintainers", "email": "maintainers@portcullis.io"}])
}

pub fn provider() -> Value {
    json!({"name": "Portcullis", "url": REPOSITORY})
}

pub fn keywords() -> Value {
    json!([
        "gateway-api",
        "gateway",
        "ingress",
        "proxy",
        "load-balancer",
        "tls",
        "networking"
    ])
}

pub const MIN_KUBE_VERSION: &str = "1.29.0";

/// The `features.operators.openshift.io/*` annotations: what the operator
/// supports on OpenShift, honestly. Disconnected: every image it runs is in
/// `relatedImages` and the proxy image comes from an environment variable
/// that OLM rewrites for mirrors.
pub fn feature_annotations() -> Vec<(&'static str, &'static str)> {
    vec![
        ("features.operators.openshift.io/cnf", "false"),
        ("features.operators.openshift.io/cni", "false"),
        ("features.operators.openshift.io/csi", "false"),
        ("features.operators.openshift.io/disconnected", "true"),
        ("features.operators.openshift.io/fips-compliant", "false"),
        ("features.operators.openshift.io/proxy-aware", "false"),
        ("features.operators.openshift.io/tls-profiles", "false"),
        ("features.operators.openshift.io/token-auth-aws", "false"),
        ("features.operators.openshift.io/token-auth-azure", "false"),
        ("features.operators.openshift.io/token-auth-gcp", "false"),
    ]
}

pub fn related_images() -> Value {
    json!([
        {"name": "portcullis-operator", "image": model::operator_image()},
        {"name": "portcullis-proxy", "image": model::proxy_image()},
    ])
}

pub fn csv() -> Result<Value, Error> {
    let alm_examples = serde_json::to_string_pretty(&[to_json("alm-examples", &example())?])
        .map_err(|source| Error::Json {
            what: "alm-examples".to_owned(),
            source,
        })?;
    let operator_image = model::operator_image();
    let mut annotations = serde_json::Map::new();
    for (key, value) in [
        ("alm-examples", alm_examples.as_str()),
        ("capabilities", "Basic Install"),
        ("categories", "Networking"),
        ("containerImage", operator_image.as_str()),
        ("description", SHORT_DESCRIPTION),
        ("operatorframework.io/suggested-namespace", NAMESPACE),
        ("repository", REPOSITORY),
        ("support", "Portcullis maintainers"),
    ] {
        annotations.insert(key.to_owned(), json!(value));
    }
    for (key, value) in feature_annotations() {
        annotations.insert(key.to_owned(), json!(value));
    }
    let permissions = |scope| -> Result<Value, Error> {
        Ok(json!([{
            "serviceAccountName": NAME,
            "rules": to_json("rules", &model::policy_rules(scope))?,
        }]))
    };
    Ok(json!({
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "ClusterServiceVersion",
        "metadata": {
            "name": model::bundle_name(),
            "annotations": annotations,
            "labels": {
                "operatorframework.io/arch.amd64": "supported",
                "operatorframework.io/os.linux": "supported",
            },
        },
        "spec": {
            "displayName": DISPLAY_NAME,
            "description": DESCRIPTION,
            "version": VERSION,
            "minKubeVersion": MIN_KUBE_VERSION,
            "maturity": "alpha",
            "provider": provider(),
            "maintainers": maintainers(),
            "links": links(),
            "keywords": keywords(),
            "icon": icon()?,
            "installModes": install_modes(),
            "install": {
                "strategy": "deployment",
                "spec": {
                    "clusterPermissions": permissions(Scope::Cluster)?,
                    "permissions": permissions(Scope::OperatorNamespace)?,
                    "deployments": [{
                        "name": NAME,
                        "label": model::labels(),
                        "spec": to_json("Deployment", &model::deployment_spec())?,
                    }],
                },
            },
            "customresourcedefinitions": {"owned": [crd_description()]},
            "nativeAPIs": native_apis(),
            "relatedImages": related_images(),
        },
    }))
}

/// The bundle annotations, also the bundle image's labels.
pub fn annotations() -> Vec<(&'static str, String)> {
    vec![
        (
            "operators.operatorframework.io.bundle.mediatype.v1",
            "registry+v1".to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.manifests.v1",
            "manifests/".to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.metadata.v1",
            "metadata/".to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.package.v1",
            PACKAGE.to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.channels.v1",
            CHANNEL.to_owned(),
        ),
        (
            "operators.operatorframework.io.bundle.channel.default.v1",
            CHANNEL.to_owned(),
        ),
        (
            "com.redhat.openshift.versions",
            OPENSHIFT_VERSIONS.to_owned(),
        ),
    ]
}

fn dockerfile() -> String {
    let mut out = String::from(
        "# The OLM bundle image (registry+v1). Build from bundle/:\n#   podman build -f bundle.Dockerfile -t ghcr.io/portcullis-io/portcullis-bundle:vX.Y.Z bundle\n# Generated by `make bundle` (operator/src/bin/portcullis-manifests). Do not edit.\nFROM scratch\n\n",
    );
    for (key, value) in annotations() {
        out.push_str(&format!("LABEL {key}={value}\n"));
    }
    out.push_str(&format!(
        "LABEL org.opencontainers.image.title=\"Portcullis operator bundle\" \\\n      org.opencontainers.image.version={VERSION} \\\n      org.opencontainers.image.source={REPOSITORY} \\\n      org.opencontainers.image.licenses=Apache-2.0\n\nCOPY manifests /manifests/\nCOPY metadata /metadata/\n"
    ));
    out
}

pub fn files() -> Result<Vec<File>, Error> {
    let annotations: serde_json::Map<String, Value> = annotations()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    Ok(vec![
        File {
            path: CSV_PATH,
            contents: format!(
                "{}{}",
                header("The Portcullis ClusterServiceVersion (OLM)."),
                yaml("CSV", &csv()?)?
            ),
        },
        File {
            path: CRD_PATH,
            contents: format!(
                "{}{}",
                header("The ProxyConfig CRD, the only CRD of the bundle."),
                yaml("CRD", &ProxyConfig::crd())?
            ),
        },
        File {
            path: ANNOTATIONS_PATH,
            contents: format!(
                "{}{}",
                header("Bundle annotations (OLM registry+v1)."),
                yaml("annotations", &json!({"annotations": annotations}))?
            ),
        },
        File {
            path: DOCKERFILE_PATH,
            contents: dockerfile(),
        },
    ])
}
