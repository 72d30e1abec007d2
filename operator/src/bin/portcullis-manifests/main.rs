//! `portcullis-manifests`: writes every install manifest from one set of
//! sources, so that the paths cannot disagree:
//! - `deploy/portcullis.yaml`, the one `kubectl apply` for vanilla clusters;
//! - `bundle/` (OLM registry+v1): the ClusterServiceVersion and our CRD,
//!   `metadata/annotations.yaml`, `bundle.Dockerfile`;
//! - `olm/`: the file-based catalog, its Dockerfile, and example
//!   CatalogSource, OperatorGroup, Subscription and GatewayClass.
//!
//! The sources: the operator's RBAC table (`operator::rbac`), the ProxyConfig
//! CRD (`crds`), and the facts in [`model`] (names, images, the operator
//! Deployment). `make manifests` (or `make bundle`) runs this; a test fails
//! when a committed file differs from what it writes.
//!
//! Usage: `portcullis-manifests [--check]`. With `--check` nothing is written
//! and the exit status says whether the committed files are current.

mod bundle;
mod catalog;
mod deploy;
mod file;
mod model;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use file::{Error, File};

/// Every generated file, in a stable order.
pub fn files() -> Result<Vec<File>, Error> {
    let mut files = vec![deploy::manifest()?];
    files.extend(bundle::files()?);
    files.extend(catalog::files()?);
    Ok(files)
}

/// The repository root (this crate lives in `operator/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Committed files that differ from the generator's output.
pub fn stale(root: &Path, files: &[File]) -> Vec<&'static str> {
    files
        .iter()
        .filter(|file| {
            std::fs::read_to_string(root.join(file.path))
                .ok()
                .as_deref()
                != Some(file.contents.as_str())
        })
        .map(|file| file.path)
        .collect()
}

fn write(root: &Path, files: &[File]) -> Result<(), Error> {
    for file in files {
        let path = root.join(file.path);
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(file.contents.as_str()) {
            std::fs::write(&path, &file.contents).map_err(io)?;
            println!("wrote {}", file.path);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let check = std::env::args().skip(1).any(|arg| arg == "--check");
    let root = root();
    let files = match files() {
        Ok(files) => files,
        Err(err) => {
            eprintln!("portcullis-manifests: {err}");
            return ExitCode::FAILURE;
        }
    };
    if check {
        let stale = stale(&root, &files);
        if stale.is_empty() {
            return ExitCode::SUCCESS;
        }
        for path in stale {
            eprintln!("stale: {path} (run `make manifests`)");
        }
        return ExitCode::FAILURE;
    }
    match write(&root, &files) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("portcullis-manifests: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;
