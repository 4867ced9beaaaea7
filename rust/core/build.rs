//! Builds `boxlite-shim` (the box's init) and embeds it in this crate, so whatever links the
//! core — the Python extension in particular — carries its helper binary inside itself. The shim
//! is built by a nested cargo in its own target directory, always optimised and statically
//! linked: it is exec'd for every box start, and a static binary skips the dynamic loader.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use sha2::{Digest, Sha256};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.join("../..");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = out_dir.join("shim-target");
    for watched in ["../shim/src", "../shim/Cargo.toml", "../protocol/src", "../protocol/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", manifest_dir.join(watched).display());
    }
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args(["build", "--release", "-p", "boxlite-shim", "--target", &target, "--target-dir"])
        .arg(&target_dir);
    // The outer build's settings describe the crate being built (often a cdylib for Python);
    // the shim is a plain host executable.
    for variable in ["CARGO_TARGET_DIR", "CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_MAKEFLAGS", "MAKEFLAGS", "MFLAGS"] {
        command.env_remove(variable);
    }
    // With --target, these flags reach the shim's crates only, not build scripts or macros.
    command.env("RUSTFLAGS", "-C target-feature=+crt-static");
    let status = command.status().expect("failed to run cargo for boxlite-shim");
    assert!(status.success(), "building boxlite-shim failed");
    let binary = target_dir.join(&target).join("release/boxlite-shim");
    let bytes = std::fs::read(&binary).expect("read the built boxlite-shim");
    let digest = Sha256::digest(&bytes);
    let short: String = digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
    println!("cargo:rustc-env=BOXLITE_SHIM_PATH={}", binary.display());
    println!("cargo:rustc-env=BOXLITE_SHIM_DIGEST={short}");
}
