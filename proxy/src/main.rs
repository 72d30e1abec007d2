//! `portcullis-proxy`: serves one Gateway's compiled configuration.
//!
//! So far it checks a config file against the contract; serving lands with
//! step 3 (see `docs/`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(version, about = "Portcullis proxy")]
struct Args {
    /// Config document to read (JSON, or gzip-compressed JSON).
    #[arg(long)]
    config: PathBuf,
    /// Check the config and exit: 0 when valid, 1 with every problem otherwise.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bytes = match std::fs::read(&args.config) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("cannot read {}: {err}", args.config.display());
            return ExitCode::FAILURE;
        }
    };
    match proxy_config::load(&bytes) {
        Ok(document) => {
            println!(
                "{}: valid, generation {}, {} listener(s)",
                args.config.display(),
                document.generation,
                document.config.listeners.len()
            );
            if args.check {
                ExitCode::SUCCESS
            } else {
                eprintln!("serving is not built yet; use --check");
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("{}: {err}", args.config.display());
            ExitCode::FAILURE
        }
    }
}
