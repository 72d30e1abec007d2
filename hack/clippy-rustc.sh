#!/usr/bin/env bash
# The compiler of the workspace's own crates in `make test`
# (RUSTC_WORKSPACE_WRAPPER): clippy's driver, warnings denied. So one build
# both lints every target and produces what the tests run, where
# `cargo clippy` would type-check every dependency once more for the lints
# alone. CLIPPY_DRIVER is the driver's path (hack/test.sh sets it).
exec "${CLIPPY_DRIVER:?}" "$@" -D warnings
