#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use pretty_assertions::assert_eq;
use serde::Deserialize;
use serde_json::Value;

use super::*;

fn generated(path: &str) -> String {
    files()
        .expect("generate")
        .into_iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} is not generated"))
        .contents
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).expect("YAML document"))
        .filter(|value| !value.is_null())
        .collect()
}

#[test]
fn committed_files_are_generated() {
    let files = files().expect("generate");
    let root = root();
    for file in &files {
        let committed = std::fs::read_to_string(root.join(file.path)).unwrap_or_default();
        assert_eq!(
            committed, file.contents,
            "{} is stale: run `make manifests`",
            file.path
        );
    }
    assert_eq!(stale(&root, &files), Vec::<&str>::new());
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(files().expect("first"), files().expect("second"));
}

#[test]
fn the_bundle_holds_the_csv_and_our_crd_only() {
    let manifests: Vec<&str> = files()
        .expect("generate")
        .iter()
        .map(|f| f.path)
        .filter(|p| p.starts_with("bundle/manifests/"))
        .collect();
    assert_eq!(manifests, [bundle::CSV_PATH, bundle::CRD_PATH]);
    let crd = documents(&generated(bundle::CRD_PATH));
    assert_eq!(crd.len(), 1);
    assert_eq!(crd[0]["spec"]["group"], crds::GROUP);
    for path in manifests {
        for document in documents(&generated(path)) {
            let group = document["spec"]["group"].as_str().unwrap_or_default();
            assert_ne!(
                group,
                operator_core::names::GATEWAY_GROUP,
                "{path} bundles a Gateway API CRD"
            );
        }
    }
}

#[test]
fn the_csv_installs_in_all_namespaces_and_requires_no_gateway_api_crd() {
    let csv = &documents(&generated(bundle::CSV_PATH))[0];
    let modes: Vec<(String, bool)> = csv["spec"]["installModes"]
        .as_array()
        .expect("installModes")
        .iter()
        .map(|m| {
            (
                m["type"].as_str().expect("type").to_owned(),
                m["supported"].as_bool().expect("supported"),
            )
        })
        .collect();
    let supported: Vec<&str> = modes
        .iter()
        .filter(|(_, s)| *s)
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(supported, ["AllNamespaces"]);
    assert_eq!(modes.len(), 4);
    assert!(csv["spec"]["customresourcedefinitions"]["required"].is_null());
    let owned = &csv["spec"]["customresourcedefinitions"]["owned"];
    assert_eq!(owned.as_array().map(Vec::len), Some(1));
    assert_eq!(owned[0]["name"], "proxyconfigs.gateway.portcullis.io");
    let native: Vec<&str> = csv["spec"]["nativeAPIs"]
        .as_array()
        .expect("nativeAPIs")
        .iter()
        .map(|g| {
            assert_eq!(g["group"], operator_core::names::GATEWAY_GROUP);
            g["kind"].as_str().expect("kind")
        })
        .collect();
    assert!(native.contains(&"GatewayClass") && native.contains(&"Gateway"));
    assert_eq!(csv["spec"]["replaces"], Value::Null);
}

#[test]
fn the_alm_example_is_a_valid_proxy_config() {
    let csv = &documents(&generated(bundle::CSV_PATH))[0];
    let examples: Vec<crds::ProxyConfig> = serde_json::from_str(
        csv["metadata"]["annotations"]["alm-examples"]
            .as_str()
            .expect("alm-examples"),
    )
    .expect("alm-examples parse as ProxyConfigs");
    assert_eq!(examples.len(), 1);
}

#[test]
fn the_proxy_image_reaches_the_operator_by_env_and_is_a_related_image() {
    let csv = &documents(&generated(bundle::CSV_PATH))[0];
    let related: Vec<&str> = csv["spec"]["relatedImages"]
        .as_array()
        .expect("relatedImages")
        .iter()
        .map(|i| i["image"].as_str().expect("image"))
        .collect();
    let container = &csv["spec"]["install"]["spec"]["deployments"][0]["spec"]["template"]["spec"]["containers"]
        [0];
    let env = container["env"].as_array().expect("env");
    let proxy = env
        .iter()
        .find(|e| e["name"] == "PORTCULLIS_PROXY_IMAGE")
        .and_then(|e| e["value"].as_str())
        .expect("PORTCULLIS_PROXY_IMAGE");
    assert!(related.contains(&proxy), "{proxy} not in {related:?}");
    let image = container["image"].as_str().expect("image");
    assert!(related.contains(&image), "{image} not in {related:?}");
}

#[test]
fn the_operator_pod_is_restricted_v2_compatible() {
    let manifest = documents(&generated(deploy::PATH));
    let deployment = manifest
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(
        pod["securityContext"]["runAsUser"].is_null(),
        "no fixed UID"
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert!(security["runAsUser"].is_null(), "no fixed UID");
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["containerPort"], model::ADMIN_PORT);
    let env: Vec<&str> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert_eq!(env, ["POD_NAMESPACE", "POD_NAME", "PORTCULLIS_PROXY_IMAGE"]);
}

#[test]
fn deploy_and_bundle_run_the_same_operator_with_the_same_rules() {
    let manifest = documents(&generated(deploy::PATH));
    let csv = &documents(&generated(bundle::CSV_PATH))[0];
    let deployment = manifest
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let install = &csv["spec"]["install"]["spec"];
    assert_eq!(deployment["spec"], install["deployments"][0]["spec"]);
    let of = |kind: &str| {
        manifest
            .iter()
            .find(|d| d["kind"] == kind)
            .map(|d| d["rules"].clone())
            .expect(kind)
    };
    assert_eq!(of("ClusterRole"), install["clusterPermissions"][0]["rules"]);
    assert_eq!(of("Role"), install["permissions"][0]["rules"]);
}

#[test]
fn deploy_installs_the_default_gateway_class_and_no_gateway_api_crd() {
    let manifest = documents(&generated(deploy::PATH));
    let kinds: Vec<&str> = manifest
        .iter()
        .map(|d| d["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "GatewayClass",
        ]
    );
    let class = manifest.last().expect("GatewayClass");
    assert_eq!(class["metadata"]["name"], "portcullis");
    assert_eq!(
        class["spec"]["controllerName"],
        operator_core::names::CONTROLLER_NAME
    );
    for crd in manifest
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        assert_eq!(crd["spec"]["group"], crds::GROUP);
    }
}

/// The native APIs must be served by every Gateway API release the operator
/// supports, or OLM would refuse to install it there.
#[test]
fn native_apis_are_served_by_every_supported_gateway_api_release() {
    let cache = root().join(".cache/gateway-api");
    let releases = ["v1.2.1", "v1.6.1"];
    if releases
        .iter()
        .any(|r| !cache.join(r).join("standard").is_dir())
    {
        eprintln!(
            "skipped: no Gateway API CRDs in {} (make cluster-bins)",
            cache.display()
        );
        return;
    }
    let native = bundle::native_apis();
    for release in releases {
        let dir = cache.join(release).join("standard");
        let mut served: Vec<(String, String)> = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("CRD directory") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("CRD");
            for document in documents(&text) {
                if document["kind"] != "CustomResourceDefinition" {
                    continue;
                }
                let kind = document["spec"]["names"]["kind"]
                    .as_str()
                    .unwrap_or_default();
                for version in document["spec"]["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if version["served"] == true {
                        served.push((
                            kind.to_owned(),
                            version["name"].as_str().unwrap_or_default().to_owned(),
                        ));
                    }
                }
            }
        }
        for gvk in native.as_array().expect("nativeAPIs") {
            let wanted = (
                gvk["kind"].as_str().expect("kind").to_owned(),
                gvk["version"].as_str().expect("version").to_owned(),
            );
            assert!(
                served.contains(&wanted),
                "{release} standard does not serve {wanted:?}"
            );
        }
    }
}

#[test]
fn the_catalog_names_the_bundle_and_its_channel() {
    let index = documents(&generated(catalog::INDEX_PATH));
    let schemas: Vec<&str> = index
        .iter()
        .map(|d| d["schema"].as_str().expect("schema"))
        .collect();
    assert_eq!(schemas, ["olm.package", "olm.channel", "olm.bundle"]);
    assert_eq!(index[0]["defaultChannel"], index[1]["name"]);
    assert_eq!(index[1]["entries"][0]["name"], index[2]["name"]);
    assert_eq!(index[2]["name"], model::bundle_name());
    let annotations = documents(&generated(bundle::ANNOTATIONS_PATH));
    assert_eq!(
        annotations[0]["annotations"]["operators.operatorframework.io.bundle.package.v1"],
        index[0]["name"]
    );
}
