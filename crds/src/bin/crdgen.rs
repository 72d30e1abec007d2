//! Writes the ProxyConfig CRD YAML next to this crate's sources.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(crds::CRD_FILE);
    let result = crds::crd_yaml()
        .map_err(|err| err.to_string())
        .and_then(|yaml| std::fs::write(&path, yaml).map_err(|err| err.to_string()));
    match result {
        Ok(()) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("crdgen: cannot write {}: {err}", path.display());
            ExitCode::FAILURE
        }
    }
}
