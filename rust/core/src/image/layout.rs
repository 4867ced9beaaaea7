//! Local OCI image layouts (the `oci-layout` + `index.json` + `blobs/` directory format).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::digest::sha256_hex;
use super::unpack::{unpack_layer, LayerStore};
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
        lower_dirs.push(unpack_layer(&LayerStore::of(home), &path, &layer.digest)?);
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

/// Random layouts: indexes, manifests and garbage blobs that point at each other (or at digests
/// with path separators, or nowhere) are either resolved to a manifest whose every blob is in
/// the layout, or refused with an error; never a panic, never a path outside the layout.
#[cfg(test)]
mod reading_random_layouts {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Target {
        /// A blob written before this one, with the media type the descriptor claims.
        Earlier(usize, &'static str),
        Bogus(&'static str),
    }

    #[derive(Debug, Clone)]
    enum Document {
        Index(Vec<Target>),
        Manifest(Target, Vec<Target>),
        Garbage(Vec<u8>),
    }

    fn target() -> impl Strategy<Value = Target> {
        let media = prop::sample::select(vec![INDEX_TYPES[0], INDEX_TYPES[1], MANIFEST_TYPES[0], MANIFEST_TYPES[1], "", "text/plain"]);
        let bogus = prop::sample::select(vec!["sha256:../../../../etc/passwd", "sha256:abc", "md5:00", "", "sha256:/etc/shadow"]);
        prop_oneof![(0..8usize, media).prop_map(|(index, media)| Target::Earlier(index, media)), bogus.prop_map(Target::Bogus)]
    }

    fn document() -> impl Strategy<Value = Document> {
        prop_oneof![
            prop::collection::vec(target(), 0..3).prop_map(Document::Index),
            (target(), prop::collection::vec(target(), 0..3)).prop_map(|(config, layers)| Document::Manifest(config, layers)),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(Document::Garbage),
        ]
    }

    fn descriptor(target: &Target, digests: &[String]) -> serde_json::Value {
        match target {
            Target::Earlier(index, media) if !digests.is_empty() => serde_json::json!({"mediaType": media, "digest": digests[index % digests.len()], "size": 1}),
            Target::Earlier(_, media) => serde_json::json!({"mediaType": media, "digest": "sha256:0", "size": 1}),
            Target::Bogus(digest) => serde_json::json!({"mediaType": MANIFEST_TYPES[0], "digest": digest, "size": 1}),
        }
    }

    /// Writes the blobs in order (each may point at those before it), then an index.json
    /// pointing at `roots`.
    fn write_layout(dir: &Path, documents: &[Document], roots: &[Target]) {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("blobs");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion": "1.0.0"}"#).expect("oci-layout");
        let mut digests: Vec<String> = Vec::new();
        for document in documents {
            let bytes = match document {
                Document::Index(targets) => serde_json::to_vec(&serde_json::json!({"manifests": targets.iter().map(|target| descriptor(target, &digests)).collect::<Vec<_>>()})),
                Document::Manifest(config, layers) => serde_json::to_vec(&serde_json::json!({
                    "config": descriptor(config, &digests),
                    "layers": layers.iter().map(|target| descriptor(target, &digests)).collect::<Vec<_>>(),
                })),
                Document::Garbage(bytes) => Ok(bytes.clone()),
            }
            .expect("json");
            let hex = format!("{:x}", Sha256::digest(&bytes));
            std::fs::write(dir.join("blobs/sha256").join(&hex), &bytes).expect("blob");
            digests.push(format!("sha256:{hex}"));
        }
        let index = serde_json::json!({"manifests": roots.iter().map(|target| descriptor(target, &digests)).collect::<Vec<_>>()});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).expect("json")).expect("index");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn a_random_layout_resolves_inside_itself_or_is_refused(
            documents in prop::collection::vec(document(), 0..6),
            roots in prop::collection::vec(target(), 0..3),
        ) {
            let dir = std::env::temp_dir().join(format!("boxlite-layout-fuzz-{}-{}", std::process::id(), rand::random::<u64>()));
            write_layout(&dir, &documents, &roots);
            let found = find_manifest(&dir);
            if let Ok(manifest) = &found {
                for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
                    if let Ok(path) = blob_path(&dir, &descriptor.digest) {
                        prop_assert!(path.starts_with(dir.join("blobs/sha256")), "{}", path.display());
                    }
                }
                let _ = read_json_blob::<ConfigBlob>(&dir, &manifest.config.digest);
            }
            std::fs::remove_dir_all(&dir).expect("clean up");
        }
    }
}
