//! Builds a box's root inside fresh namespaces. [`enter`] is the whole script, in order; each
//! step is one function below it. It runs in the box's pid 1 (`pid1`), as host root, before
//! anything else runs in the box; the box's /proc is mounted by it, so it shows the box's pid
//! namespace.

use std::path::{Path, PathBuf};

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use boxlite_protocol::{IdMap, ShimConfig, VolumeMount};

use crate::sys::{self, check, mkdir_all, mount, Result};
use crate::userns::{BoxNamespaces, Pending};

/// Namespaces a box gets, unshared together before the init is forked. The network namespace
/// has only a loopback interface.
pub const NAMESPACES: libc::c_int =
    libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET | libc::CLONE_NEWPID;

/// /proc entries that leak host information or allow host-wide actions: hidden behind /dev/null.
const MASKED_PROC_FILES: &[&str] =
    &["kcore", "keys", "timer_list", "sched_debug", "latency_stats", "sysrq-trigger"];
/// /proc directories that stay visible but read-only.
const READ_ONLY_PROC_DIRS: &[&str] = &["sys", "irq", "bus", "fs"];
/// (name, major, minor) of the character devices in the box's /dev.
const DEVICES: &[(&str, u32, u32)] =
    &[("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// `namespaces`: the box's user namespaces, whose id maps the layers and the read-only volumes
/// take (idmapped mounts).
pub fn enter(config: &ShimConfig, namespaces: Option<&BoxNamespaces>) -> Result<()> {
    make_mounts_private()?;
    let root = &config.merged_dir;
    let layers_namespace = namespaces.zip(config.user_namespace).and_then(|(namespaces, map)| namespaces.layers(map));
    if let Some(disk) = &config.disk {
        crate::disk::mount_disk(disk, &config.upper_dir, &config.work_dir)?;
    }
    mount_overlay(config, layers_namespace)?;
    bind_read_only(root, &config.read_only_binds)?;
    mount_proc(root)?;
    mount_dev(root, config.user_namespace.map(|map| map.host_base), config.rootless)?;
    mount_sys(root)?;
    // The runtime's resolv.conf first: a volume the user put there covers it.
    let resolv_conf = config.resolv_conf.iter().map(|source| VolumeMount { source: source.clone(), target: "/etc/resolv.conf".into(), read_only: true, layers_ids: false });
    let mounts: Vec<VolumeMount> = resolv_conf.chain(config.volumes.iter().cloned()).collect();
    // An ordinary user's runtime may idmap no mount of the host's: volumes are mounted as they
    // are, and the user's own files read as box root's.
    let box_ids = config.user_namespace.zip(namespaces).filter(|_| !config.rootless);
    let volumes = open_volume_sources(&mounts, box_ids)?;
    pivot_into(root)?;
    if let Some(authority) = &config.trusted_authority {
        trust_authority(authority)?;
    }
    mount_volumes(&volumes)?;
    set_hostname(&config.hostname)?;
    Ok(())
}

fn make_mounts_private() -> Result<()> {
    mount(None, Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE, None)
}

/// `layers_namespace`: the lower layers are first mounted with the box's ids through it (see
/// `userns`), each at `lower_mounts_dir/<n>`.
fn mount_overlay(config: &ShimConfig, layers_namespace: Option<&OwnedFd>) -> Result<()> {
    mkdir_all(&config.merged_dir)?;
    let lower_dirs = match layers_namespace {
        Some(namespace) => idmapped_layers(config, namespace)?,
        None => config.lower_dirs.clone(),
    };
    let lower: Vec<String> = lower_dirs.iter().map(|dir| escape_overlay_path(dir)).collect();
    // An ordinary user's runtime stores opaque directories' marks as `user.` attributes:
    // `trusted.` ones take host root (`boxlite_protocol::ShimConfig::rootless`).
    let options = format!(
        "lowerdir={},upperdir={},workdir={}{}",
        lower.join(":"),
        escape_overlay_path(&config.upper_dir),
        escape_overlay_path(&config.work_dir),
        if config.rootless { ",userxattr" } else { "" }
    );
    // nodev: a device node in an image or made in the box never opens a host device.
    mount(Some("overlay"), &config.merged_dir, Some("overlay"), libc::MS_NODEV, Some(&options))
}

/// Mounts each lower layer, read-only, with its ids mapped through `namespace`; returns where.
fn idmapped_layers(config: &ShimConfig, namespace: &OwnedFd) -> Result<Vec<PathBuf>> {
    let attributes = MountAttr { attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: namespace.as_raw_fd() as u64 };
    config
        .lower_dirs
        .iter()
        .enumerate()
        .map(|(index, layer)| {
            let target = config.lower_mounts_dir.join(index.to_string());
            mkdir_all(&target)?;
            let tree = clone_tree(layer, &attributes, "image layer")?;
            attach_tree(&tree, &target, || format!("failed to mount image layer {} on {}", layer.display(), target.display()))?;
            Ok(target)
        })
        .collect()
}

/// overlayfs splits its options on `,` and lower directories on `:`; both are escaped with `\`.
fn escape_overlay_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, ',' | ':' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn bind_read_only(root: &Path, binds: &[(PathBuf, PathBuf)]) -> Result<()> {
    for (source, destination) in binds {
        let target = inside(root, destination);
        if source.is_dir() {
            mkdir_all(&target)?;
        } else if !target.exists() {
            if let Some(parent) = target.parent() {
                mkdir_all(parent)?;
            }
            std::fs::File::create(&target).map_err(|source| sys::SysError { operation: format!("failed to create mount point {}", target.display()), source })?;
        }
        // Not recursive: a remount makes only the top mount read-only, so host mounts below
        // `source` must not come along writable.
        mount(Some(&source.to_string_lossy()), &target, None, libc::MS_BIND, None)?;
        mount(None, &target, None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV, None)?;
    }
    Ok(())
}

/// /proc of the new pid namespace, with host-revealing entries masked. Mounted before
/// pivot_root: inside a user namespace the kernel refuses a procfs mount once no fully visible
/// procfs is left.
fn mount_proc(root: &Path) -> Result<()> {
    let proc_dir = root.join("proc");
    mkdir_all(&proc_dir)?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount(Some("proc"), &proc_dir, Some("proc"), flags, None)?;
    for name in MASKED_PROC_FILES {
        let target = proc_dir.join(name);
        if target.exists() {
            mount(Some("/dev/null"), &target, None, libc::MS_BIND, None)?;
        }
    }
    for name in READ_ONLY_PROC_DIRS {
        let target = proc_dir.join(name);
        if target.exists() {
            let target_text = target.to_string_lossy().into_owned();
            mount(Some(&target_text), &target, None, libc::MS_BIND | libc::MS_REC, None)?;
            mount(None, &target, None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags, None)?;
        }
    }
    Ok(())
}

/// A minimal /dev: a few character devices, a private devpts instance, /dev/shm (64 MiB for
/// all of /dev, as Docker gives /dev/shm). It belongs to
/// the box's root (`box_root`: its host id, when the box has a user namespace). `rootless`: no
/// one may make device nodes, so the host's own are bound in their place.
fn mount_dev(root: &Path, box_root: Option<u32>, rootless: bool) -> Result<()> {
    let dev = root.join("dev");
    mkdir_all(&dev)?;
    let owner = box_root.map(|id| format!(",uid={id},gid={id}")).unwrap_or_default();
    mount(Some("tmpfs"), &dev, Some("tmpfs"), libc::MS_NOSUID | libc::MS_NOEXEC, Some(&format!("mode=755,size=65536k{owner}")))?;
    for (name, major, minor) in DEVICES {
        let node = dev.join(name);
        if rootless {
            std::fs::File::create(&node).map_err(|source| sys::SysError { operation: format!("failed to create mount point {}", node.display()), source })?;
            mount(Some(&format!("/dev/{name}")), &node, None, libc::MS_BIND, None)?;
        } else {
            sys::mknod_char(&node, *major, *minor)?;
        }
    }
    let pts = dev.join("pts");
    mkdir_all(&pts)?;
    mount(Some("devpts"), &pts, Some("devpts"), libc::MS_NOSUID | libc::MS_NOEXEC, Some("newinstance,ptmxmode=0666,mode=0620"))?;
    sys::symlink("pts/ptmx", &dev.join("ptmx"))?;
    // POSIX shared memory's directory, in /dev's file system rather than one of its own. Each
    // mounted file system takes a number for its reclaim (its shrinker), and the kernel gives
    // every memory cgroup made later (a box has one) 16 bytes per number (a 1 KiB object per
    // 64) up to the highest given so far: each file system a box mounts makes every later box
    // larger, the more so the more boxes run (at 5,000 boxes, each of a box's file systems
    // costs each box about 80 KiB).
    let shm = dev.join("shm");
    mkdir_all(&shm)?;
    if let Some(id) = box_root {
        std::os::unix::fs::chown(&shm, Some(id), Some(id)).map_err(|source| sys::SysError { operation: format!("failed to give {} to the box's root", shm.display()), source })?;
    }
    std::fs::set_permissions(&shm, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).map_err(|source| sys::SysError { operation: format!("failed to open {} to every user", shm.display()), source })?;
    for (link, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
        sys::symlink(target, &dev.join(link))?;
    }
    Ok(())
}

fn mount_sys(root: &Path) -> Result<()> {
    let sys_dir = root.join("sys");
    mkdir_all(&sys_dir)?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
    mount(Some("sysfs"), &sys_dir, Some("sysfs"), flags, None)
}

/// A volume's source as a detached copy of its mount (`open_tree(OPEN_TREE_CLONE)`), made
/// before pivot_root (after which host paths no longer resolve) and attached after it.
struct OpenVolume<'a> {
    tree: OwnedFd,
    is_dir: bool,
    volume: &'a VolumeMount,
}

/// Flags of open_tree(2), mount_setattr(2) and move_mount(2) (linux/mount.h).
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Clones each volume's source (not recursively: host mounts below it stay out) and sets its
/// flags: nosuid and nodev always; read-only when asked. In a box with a user namespace
/// (`box_ids`: its range and its namespaces), a named volume, stored with the layers' ids, is
/// mounted through the layers' namespace into the box's range; a read-only host directory takes
/// the box's id map (host root's files read as the box root's). A writable host directory is
/// idmapped only when a host user other than root owns it: box root then reads and writes there
/// as that user, so what it makes is the user's; one of host root's is not, since box root would
/// otherwise make files of host root's — a setuid-root program, say. Box processes lack
/// CAP_SYS_ADMIN over their mounts, so they cannot make a read-only volume writable again.
fn open_volume_sources<'a>(volumes: &'a [VolumeMount], box_ids: Option<(IdMap, &BoxNamespaces)>) -> Result<Vec<OpenVolume<'a>>> {
    volumes
        .iter()
        .map(|volume| {
            let read_only = if volume.read_only { MOUNT_ATTR_RDONLY } else { 0 };
            let owner_namespace = match box_ids {
                Some((map, _)) if !volume.read_only && !volume.layers_ids => owner_namespace(&volume.source, map)?,
                _ => None,
            };
            let idmapped = match (&owner_namespace, box_ids) {
                (Some(owner), _) => Some(owner.namespace()),
                (None, Some((map, namespaces))) if volume.layers_ids => namespaces.layers(map),
                (None, Some((_, namespaces))) if volume.read_only => Some(namespaces.own()),
                _ => None,
            };
            let (idmap, userns_fd) = idmapped.map_or((0, 0), |namespace| (MOUNT_ATTR_IDMAP, namespace.as_raw_fd() as u64));
            let attributes = MountAttr { attr_set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | read_only | idmap, attr_clr: 0, propagation: 0, userns_fd };
            let tree = clone_tree(&volume.source, &attributes, "volume source")?;
            Ok(OpenVolume { tree, is_dir: volume.source.is_dir(), volume })
        })
        .collect()
}

/// For a writable volume whose source a host user owns — not root, and none of boxes' ids (a
/// box must not act as another box's user): a user namespace in which that user (and its
/// group) is box root, for an idmapped mount.
fn owner_namespace(source: &Path, box_ids: IdMap) -> Result<Option<Pending>> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(source).map_err(|source_error| sys::SysError { operation: format!("failed to read volume source {}", source.display()), source: source_error })?;
    if metadata.uid() == 0 || metadata.uid() >= IdMap::LAYERS.host_base {
        return Ok(None);
    }
    let box_root = IdMap { host_base: box_ids.host_base, size: 1 };
    let mapped = Pending::create(false).and_then(|owner| owner.map(metadata.uid(), metadata.gid(), box_root).map(|()| owner));
    mapped.map(Some).map_err(|message| sys::SysError { operation: format!("failed to map volume {} to its owner: {message}", source.display()), source: std::io::Error::from_raw_os_error(libc::EPERM) })
}

/// A detached copy of the mount at `path` (not recursive: mounts below it stay out), with
/// `attributes` set. `what` names it in errors.
fn clone_tree(path: &Path, attributes: &MountAttr, what: &str) -> Result<OwnedFd> {
    let path_c = sys::cstring(path);
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree with a valid C string; the descriptor is owned at once.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path_c.as_ptr(), flags) } as libc::c_int;
    check(fd, || format!("failed to clone the mount of {what} {}", path.display()))?;
    // SAFETY: see above.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: mount_setattr on our detached tree; the attribute struct outlives the call.
    let code = unsafe {
        libc::syscall(libc::SYS_mount_setattr, tree.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, std::ptr::from_ref(attributes), std::mem::size_of::<MountAttr>())
    } as libc::c_int;
    check(code, || format!("failed to set the flags of {what} {}", path.display()))?;
    Ok(tree)
}

/// Attaches a detached tree at `target`.
fn attach_tree(tree: &OwnedFd, target: &Path, error: impl FnOnce() -> String) -> Result<()> {
    let target_c = sys::cstring(target);
    // SAFETY: move_mount of our detached tree onto a valid C string path.
    let code = unsafe { libc::syscall(libc::SYS_move_mount, tree.as_raw_fd(), c"".as_ptr(), libc::AT_FDCWD, target_c.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH) } as libc::c_int;
    check(code, error)?;
    Ok(())
}

/// Adds `authority` (PEM) to the box's trust bundle, once: a box that updated its bundle since
/// gets it again. Run after pivot_root, so the path resolves in the box's root, which the box
/// may have filled with symlinks; the open stays on the root's own filesystem (no `/proc`,
/// `/sys` or `/dev` behind a link: this process may be host root) and refuses a bundle that is
/// anything but a regular file.
fn trust_authority(authority: &str) -> Result<()> {
    use std::io::{Read, Write};
    let bundle = Path::new(boxlite_protocol::TRUST_BUNDLE);
    let failed = |source: std::io::Error| sys::SysError { operation: format!("failed to add the box's secrets authority to {}", bundle.display()), source };
    if let Some(parent) = bundle.parent() {
        mkdir_all(parent)?;
    }
    let root = std::fs::File::open("/").map_err(failed)?;
    let resolve = boxlite_protocol::resolve::NO_XDEV | boxlite_protocol::resolve::NO_MAGICLINKS;
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_NONBLOCK | libc::O_NOCTTY;
    let opened = boxlite_protocol::openat2(std::os::fd::AsFd::as_fd(&root), &sys::cstring(bundle), flags, 0o644, resolve).map_err(failed)?;
    let mut file = std::fs::File::from(opened);
    if !file.metadata().map_err(failed)?.is_file() {
        return Err(failed(std::io::Error::from_raw_os_error(libc::EINVAL)));
    }
    let mut present = Vec::new();
    file.read_to_end(&mut present).map_err(failed)?;
    let wanted = authority.trim().as_bytes();
    if present.windows(wanted.len()).any(|window| window == wanted) {
        return Ok(());
    }
    let separator = if present.is_empty() || present.ends_with(b"\n") { "" } else { "\n" };
    file.write_all(format!("{separator}{authority}").as_bytes()).map_err(failed)
}

/// Box paths a volume may not cover: the kernel's views and the devices, which stay as the
/// jail made them.
const PROTECTED_PATHS: &[&str] = &["/proc", "/sys", "/dev"];

/// Attaches each volume at its target, resolved after pivot_root so that symlinks in the image
/// resolve inside the box.
fn mount_volumes(volumes: &[OpenVolume<'_>]) -> Result<()> {
    for open in volumes {
        let target = Path::new(&open.volume.target);
        if open.is_dir {
            mkdir_all(target)?;
        } else if !target.exists() {
            if let Some(parent) = target.parent() {
                mkdir_all(parent)?;
            }
            std::fs::File::create(target).map_err(|source| sys::SysError { operation: format!("failed to create mount point {}", target.display()), source })?;
        }
        let resolved = std::fs::canonicalize(target).map_err(|source| sys::SysError { operation: format!("failed to resolve {}", target.display()), source })?;
        if resolved == Path::new("/") || PROTECTED_PATHS.iter().any(|protected| resolved.starts_with(protected)) {
            return Err(sys::SysError {
                operation: format!("volume target {} resolves to {} in the box, where volumes may not go", target.display(), resolved.display()),
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        attach_tree(&open.tree, &resolved, || format!("failed to mount volume {} on {}", open.volume.source.display(), resolved.display()))?;
    }
    Ok(())
}

/// Makes `root` the process's `/` and detaches the old root, so nothing of the host's tree stays
/// reachable. Uses the `pivot_root(".", ".")` form: the old root is stacked under the new one and
/// unmounted at once, with no directory needed for it.
fn pivot_into(root: &Path) -> Result<()> {
    let root_c = sys::cstring(root);
    let dot = sys::cstring(".");
    // SAFETY: plain syscalls on valid C strings; no memory is shared with the kernel afterwards.
    unsafe {
        check(libc::chdir(root_c.as_ptr()), || format!("failed to enter {}", root.display()))?;
        check(libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int, || {
            format!("failed to pivot_root into {}", root.display())
        })?;
        check(libc::umount2(dot.as_ptr(), libc::MNT_DETACH), || "failed to detach the old root".to_string())?;
        check(libc::chdir(sys::cstring("/").as_ptr()), || "failed to enter the new root".to_string())?;
    }
    Ok(())
}

fn set_hostname(hostname: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `hostname`'s bytes, valid during the call.
    let code = unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) };
    check(code, || format!("failed to set hostname {hostname:?}"))?;
    Ok(())
}

/// A new network namespace starts with `lo` down; bring it up so loopback networking works.
/// It needs no box setting, so the init does it ahead of need.
pub fn bring_up_loopback() -> Result<()> {
    // SAFETY: `request` is a zeroed ifreq with a NUL-terminated name; the socket is closed on
    // every path below.
    unsafe {
        let socket = check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0), || {
            "failed to open a socket to configure lo".to_string()
        })?;
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        let result = check(libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request), || "failed to read lo's flags".to_string())
            .and_then(|_| {
                request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                check(libc::ioctl(socket, libc::SIOCSIFFLAGS, &request), || "failed to bring lo up".to_string())
            });
        libc::close(socket);
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_paths_escape_separators() {
        assert_eq!(escape_overlay_path(Path::new("/a,b:c\\d")), "/a\\,b\\:c\\\\d");
        assert_eq!(inside(Path::new("/merged"), Path::new("/usr")), PathBuf::from("/merged/usr"));
    }
}
