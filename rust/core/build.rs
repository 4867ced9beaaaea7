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
    // The shim's sources and those of the workspace crates it links.
    for watched in ["../shim/src", "../shim/Cargo.toml", "../protocol/src", "../protocol/Cargo.toml", "../trees/src", "../trees/Cargo.toml"] {
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
    // A linker the outer build chose for the target (`maturin build --zig` links the extension
    // with `zig cc` against an old glibc, for a manylinux tag) cannot link glibc statically and
    // would make the shim dynamic. The host's linker makes it static, and a static shim needs no
    // glibc of any version on the machine that runs it.
    let linker_variable = format!("CARGO_TARGET_{}_LINKER", target.to_uppercase().replace('-', "_"));
    command.env_remove(linker_variable);
    // With --target, these flags reach the shim's crates only, not build scripts or macros.
    command.env("RUSTFLAGS", "-C target-feature=+crt-static");
    let status = command.status().expect("failed to run cargo for boxlite-shim");
    assert!(status.success(), "building boxlite-shim failed");
    let binary = target_dir.join(&target).join("release/boxlite-shim");
    let bytes = std::fs::read(&binary).expect("read the built boxlite-shim");
    assert!(!asks_for_a_dynamic_loader(&bytes), "{} was linked dynamically; the shim must be static", binary.display());
    let digest = Sha256::digest(&bytes);
    let short: String = digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
    println!("cargo:rustc-env=BOXLITE_SHIM_PATH={}", binary.display());
    println!("cargo:rustc-env=BOXLITE_SHIM_DIGEST={short}");
}

/// Whether an ELF64 executable names an interpreter (a `PT_INTERP` program header): the dynamic
/// loader a static binary goes without.
fn asks_for_a_dynamic_loader(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |offset: usize, size: usize| -> u64 {
        let field = elf.get(offset..offset + size).expect("the shim is an ELF64 file");
        field.iter().rev().fold(0, |value, byte| value << 8 | u64::from(*byte))
    };
    assert_eq!(elf.get(..5), Some(&b"\x7fELF\x02"[..]), "the shim is an ELF64 file");
    let (table, entry_size, entries) = (read(32, 8) as usize, read(54, 2) as usize, read(56, 2) as usize);
    (0..entries).any(|index| read(table + index * entry_size, 4) as u32 == PT_INTERP)
}
