//! The built-in `host://` image: a small skeleton root (its own /etc, /tmp, /root) whose /usr is
//! the host's, bound read-only. With a merged-/usr host (Debian 12) that is every program and
//! library. Nothing else of the host is visible: not /home, not /root, not the host's /etc —
//! only copies, made when the skeleton is written, of what programs need from it: the loader
//! cache, the alternatives links and the public CA certificates (never /etc/ssl/private).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{ImageConfig, PreparedImage};
use crate::error::Result;
use crate::home::Home;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n";
const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
/// Host paths copied into the skeleton when they exist. The loader cache spares every
/// dynamically linked program a search of the library directories.
const COPIED_FROM_HOST: &[&str] = &["/etc/ld.so.cache", "/etc/alternatives", "/etc/ssl/certs", "/etc/ssl/openssl.cnf"];
/// Written last: a skeleton without it is incomplete (or from an older recipe) and is rebuilt.
const COMPLETE_MARKER: &str = ".boxlite-skeleton-3";

/// Copies a host tree, keeping symlinks as symlinks.
fn copy_tree(source: &Path, destination: &Path) -> Result<()> {
    let metadata = fs_err::symlink_metadata(source)?;
    if metadata.is_symlink() {
        let target = fs_err::read_link(source)?;
        std::os::unix::fs::symlink(&target, destination).map_err(|error| crate::Error::storage("link", destination, &error))?;
    } else if metadata.is_dir() {
        fs_err::create_dir_all(destination)?;
        for entry in fs_err::read_dir(source)? {
            let entry = entry?;
            copy_tree(&entry.path(), &destination.join(entry.file_name()))?;
        }
    } else if metadata.is_file() {
        fs_err::copy(source, destination)?;
    }
    Ok(())
}

/// Gives the skeleton to the boxes' root (`idmap` rule 2). Symlinks are owned, never followed.
fn own_tree(path: &Path, owner: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(owner), Some(owner)).map_err(|error| crate::Error::storage("chown", path, &error))?;
    if fs_err::symlink_metadata(path)?.is_dir() {
        for entry in fs_err::read_dir(path)? {
            own_tree(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

fn write_skeleton(root: &Path) -> Result<()> {
    for (dir, mode) in [("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("home", 0o755), ("var/tmp", 0o1777), ("usr", 0o755)] {
        let path = root.join(dir);
        fs_err::create_dir_all(&path)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    for (name, text) in [("etc/passwd", PASSWD), ("etc/group", GROUP), ("etc/hosts", HOSTS), ("etc/resolv.conf", "")] {
        fs_err::write(root.join(name), text)?;
    }
    for copied in COPIED_FROM_HOST.iter().map(Path::new).filter(|path| path.exists()) {
        let destination = root.join(copied.strip_prefix("/").unwrap_or(copied));
        if let Some(parent) = destination.parent() {
            fs_err::create_dir_all(parent)?;
        }
        copy_tree(copied, &destination)?;
    }
    for link in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
        if Path::new("/").join(link).is_symlink() {
            let target = fs_err::read_link(Path::new("/").join(link))?;
            std::os::unix::fs::symlink(&target, root.join(link)).map_err(|error| crate::Error::storage("link", &root.join(link), &error))?;
        }
    }
    fs_err::write(root.join(COMPLETE_MARKER), "")?;
    Ok(())
}

/// Held while the skeleton is checked and written: concurrent creates of a fresh home would
/// otherwise write it twice at once. (Other processes cannot: one runtime per home.)
static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(super) fn prepare(home: &Home) -> Result<PreparedImage> {
    let skeleton = home.host_skeleton();
    let _writing = WRITING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !skeleton.join(COMPLETE_MARKER).exists() {
        let staging = home.layers_tmp().join(format!("host-{}-{}", std::process::id(), rand::random::<u32>()));
        let _ = fs_err::remove_dir_all(&staging);
        write_skeleton(&staging)?;
        if let Some(owner) = crate::idmap::host_owner(home.id_map(), 0) {
            own_tree(&staging, owner)?;
        }
        let _ = fs_err::remove_dir_all(&skeleton);
        fs_err::rename(&staging, &skeleton)?;
    }
    Ok(PreparedImage {
        lower_dirs: vec![skeleton],
        read_only_binds: vec![(PathBuf::from("/usr"), PathBuf::from("/usr"))],
        config: ImageConfig {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()],
            ..ImageConfig::default()
        },
        id: "host".to_string(),
    })
}
