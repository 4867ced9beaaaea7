//! Local OCI image layouts (the `oci-layout` + `index.json` + `blobs/` directory format).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::digest::sha256_hex;
use super::unpack::unpack_layer;
use super::{ConfigBlob, PreparedImage};
use crate::error::{Error, Result};
use crate::home::Home;

const MANIFEST_TYPES: &[&str] =
    &["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];
const INDEX_TYPES: &[&str] =
    &["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// The architecture name OCI uses for this host.
pub(super) fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn invalid(layout: &Path, what: impl std::fmt::Display) -> Error {
    Error::Image(format!("{} is not a usable OCI image layout: {what}", layout.display()))
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf> {
    let hex = sha256_hex(digest).ok_or_else(|| invalid(layout, format!("unsupported digest {digest:?}")))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

/// Reads a small JSON blob and checks it against its digest.
fn read_json_blob<T: for<'a> Deserialize<'a>>(layout: &Path, digest: &str) -> Result<T> {
    let path = blob_path(layout, digest)?;
    let bytes = std::fs::read(&path).map_err(|error| invalid(layout, format!("cannot read blob {digest}: {error}")))?;
    let actual = format!("sha256:{:x}", Sha256::digest(&bytes));
    if actual != digest {
        return Err(invalid(layout, format!("blob {digest} has digest {actual}")));
    }
    serde_json::from_slice(&bytes).map_err(|error| invalid(layout, format!("blob {digest} is not valid JSON: {error}")))
}

fn pick<'a>(layout: &Path, descriptors: &'a [Descriptor]) -> Result<&'a Descriptor> {
    let matches_host = |descriptor: &&Descriptor| {
        descriptor
            .platform
            .as_ref()
            .is_none_or(|platform| platform.os == "linux" && platform.architecture == host_architecture())
    };
    descriptors
        .iter()
        .find(matches_host)
        .ok_or_else(|| invalid(layout, format!("no manifest for linux/{}", host_architecture())))
}

fn find_manifest(layout: &Path) -> Result<Manifest> {
    if !layout.is_dir() {
        return Err(Error::NotFound(format!("image layout {} does not exist", layout.display())));
    }
    if !layout.join("oci-layout").is_file() {
        return Err(invalid(layout, "no oci-layout file"));
    }
    let index_path = layout.join("index.json");
    let index_bytes = std::fs::read(&index_path).map_err(|error| invalid(layout, format!("cannot read index.json: {error}")))?;
    let index: Index = serde_json::from_slice(&index_bytes).map_err(|error| invalid(layout, format!("bad index.json: {error}")))?;
    let mut descriptor = pick(layout, &index.manifests)?;
    let mut nested: Index;
    // A layout may point at an image index (multi-platform); follow it to one manifest.
    for _ in 0..4 {
        if INDEX_TYPES.contains(&descriptor.media_type.as_str()) {
            nested = read_json_blob(layout, &descriptor.digest)?;
            descriptor = pick(layout, &nested.manifests)?;
            continue;
        }
        if !descriptor.media_type.is_empty() && !MANIFEST_TYPES.contains(&descriptor.media_type.as_str()) {
            return Err(invalid(layout, format!("unsupported manifest type {}", descriptor.media_type)));
        }
        return read_json_blob(layout, &descriptor.digest);
    }
    Err(invalid(layout, "image indexes nested too deeply"))
}

pub(super) fn prepare(home: &Home, layout: &Path) -> Result<PreparedImage> {
    let manifest = find_manifest(layout)?;
    let config: ConfigBlob = read_json_blob(layout, &manifest.config.digest)?;
    let mut lower_dirs = Vec::with_capacity(manifest.layers.len());
    for layer in &manifest.layers {
        let path = blob_path(layout, &layer.digest)?;
        lower_dirs.push(unpack_layer(&home.layers(), &home.layers_tmp(), &path, &layer.digest, home.id_map())?);
    }
    if lower_dirs.is_empty() {
        return Err(invalid(layout, "the image has no layers"));
    }
    lower_dirs.reverse();
    Ok(PreparedImage {
        lower_dirs,
        read_only_binds: Vec::new(),
        config: config.image_config(),
        id: manifest.config.digest,
    })
}
