//! The Portcullis operator. Today it holds the identifiers it shares with
//! the other parts; the controller lands with step 5 (see `docs/`).

/// The `GatewayClass.spec.controllerName` this operator serves. Classes with
/// any other controller name are never touched.
pub const CONTROLLER_NAME: &str = "portcullis.io/gateway-controller";
