//! Copying files between the host and a running box, with `docker cp` conventions:
//!
//! - a file to an existing directory, or to a path ending in `/`, lands inside it; to any other
//!   path it is written (or renamed) there;
//! - a directory to an existing directory lands inside it as `<dir>/<name>`; to a new path it
//!   becomes that path; a source ending in `/.` copies the directory's contents instead;
//! - symlinks are copied as symlinks unless `follow_symlinks`.
//!
//! Every path in the box is resolved inside the box's root (see `resolve`), files stream
//! without being loaded into memory, and special files (devices, fifos, sockets) are refused.
//! /proc, /sys and /dev of a box are never copy sources or targets (`kernel_views`), and a copy
//! into a box writes only its own filesystem, never its volumes (`same_filesystem`).

mod resolve;

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use resolve::{is_dir, is_regular, is_symlink, open_at, open_in_root, stat_at};

/// Why a copy failed, by kind: the runtime's errors of the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    InvalidArgument(String),
    NotFound(String),
    AlreadyExists(String),
    Config(String),
    Storage(String),
}

use FileError as Error;
type Result<T> = std::result::Result<T, FileError>;

impl FileError {
    fn storage(operation: &str, path: &Path, source: &io::Error) -> Self {
        Self::Storage(format!("failed to {operation} {}: {source}", path.display()))
    }

    /// One line, `<kind> <message>`, that [`FileError::from_line`] reads back: how the shim
    /// reports a copy it made for the runtime (`boxlite_protocol::subordinate_tasks`).
    pub fn to_line(&self) -> String {
        let (kind, message) = match self {
            Self::InvalidArgument(message) => ("invalid-argument", message),
            Self::NotFound(message) => ("not-found", message),
            Self::AlreadyExists(message) => ("already-exists", message),
            Self::Config(message) => ("config", message),
            Self::Storage(message) => ("storage", message),
        };
        format!("{kind} {}", message.replace('\n', " "))
    }

    /// The error of a line [`FileError::to_line`] wrote; any other text is a storage error.
    pub fn from_line(line: &str) -> Self {
        match line.trim().split_once(' ') {
            Some(("invalid-argument", message)) => Self::InvalidArgument(message.to_string()),
            Some(("not-found", message)) => Self::NotFound(message.to_string()),
            Some(("already-exists", message)) => Self::AlreadyExists(message.to_string()),
            Some(("config", message)) => Self::Config(message.to_string()),
            Some(("storage", message)) => Self::Storage(message.to_string()),
            _ => Self::Storage(line.trim().to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    pub recursive: bool,
    pub overwrite: bool,
    pub follow_symlinks: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self { recursive: true, overwrite: true, follow_symlinks: false }
    }
}

impl CopyOptions {
    const FLAGS: [&str; 3] = ["recursive", "overwrite", "follow-symlinks"];

    /// The options as one argument of the shim (`boxlite_protocol::subordinate_tasks`): the
    /// names of those that are on, joined by commas.
    pub fn argument(self) -> String {
        let on = [self.recursive, self.overwrite, self.follow_symlinks];
        Self::FLAGS.iter().zip(on).filter(|(_, on)| *on).map(|(name, _)| *name).collect::<Vec<_>>().join(",")
    }

    /// The options [`CopyOptions::argument`] wrote; `None` for a name it does not write.
    pub fn parse(argument: &str) -> Option<Self> {
        let mut options = Self { recursive: false, overwrite: false, follow_symlinks: false };
        for name in argument.split(',').filter(|name| !name.is_empty()) {
            match name {
                "recursive" => options.recursive = true,
                "overwrite" => options.overwrite = true,
                "follow-symlinks" => options.follow_symlinks = true,
                _ => return None,
            }
        }
        Some(options)
    }
}

const REFUSED: &[&str] = &["proc", "sys", "dev"];

/// A box path made absolute and clean (no `.`, `..` resolved lexically at the root), plus
/// whether it asked for a directory's contents (`/.`) or named a directory (`/`).
struct BoxPath {
    path: PathBuf,
    contents_only: bool,
    trailing_slash: bool,
}

fn box_path(text: &str) -> Result<BoxPath> {
    if text.is_empty() {
        return Err(Error::Config("the path in the box must not be empty".to_string()));
    }
    let mut path = PathBuf::from("/");
    for component in Path::new(text).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::ParentDir => {
                path.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if let Some(Component::Normal(first)) = path.components().nth(1) {
        if REFUSED.iter().any(|refused| first == *refused) {
            return Err(Error::InvalidArgument(format!("{text}: /{} of a box is not a copy source or target", first.to_string_lossy())));
        }
    }
    Ok(BoxPath { path, contents_only: text.ends_with("/.") || text == ".", trailing_slash: text.ends_with('/') })
}

/// A host path given to a copy: empty is refused as an empty box path is (BoxLite's `ConfigError`).
pub fn host_path(path: &Path) -> Result<&Path> {
    if path.as_os_str().is_empty() {
        return Err(Error::Config("the path on the host must not be empty".to_string()));
    }
    Ok(path)
}

fn in_box(path: &Path, error: &io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::NotFound => Error::NotFound(format!("{} does not exist in the box", path.display())),
        _ => Error::Storage(format!("{} in the box: {error}", path.display())),
    }
}

/// A failure to `operation` the host's `path`: not found, or a storage error.
pub fn on_host(operation: &str, path: &Path, error: &io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::NotFound => Error::NotFound(format!("{} does not exist on the host", path.display())),
        _ => Error::storage(operation, path, error),
    }
}

fn split(path: &Path) -> (PathBuf, PathBuf) {
    let parent = path.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let name = path.file_name().map_or_else(|| PathBuf::from("."), PathBuf::from);
    (parent, name)
}

/// The name a copied `path` lands under.
pub fn base_name(path: &Path) -> Result<PathBuf> {
    path.file_name().map(PathBuf::from).ok_or_else(|| Error::InvalidArgument(format!("{} has no name to copy under", path.display())))
}

/// Copies `host_source` into the box whose root is `root` (its init opens it: `Request::Root`).
/// What it creates belongs to the box's root user: host id `box_root` when the box has a user
/// namespace (`None`: host root, who creates it anyway). Blocking.
pub fn copy_in(root: &OwnedFd, host_source: &Path, box_destination: &str, options: CopyOptions, box_root: Option<u32>) -> Result<()> {
    let destination = box_path(box_destination)?;
    let host_source = host_path(host_source)?;
    let source_text = host_source.to_string_lossy();
    let contents_only = source_text.ends_with("/.");
    let metadata = if options.follow_symlinks { std::fs::metadata(host_source) } else { std::fs::symlink_metadata(host_source) }
        .map_err(|error| on_host("read", host_source, &error))?;
    let existing = open_in_root(root.as_fd(), &destination.path, libc::O_PATH, 0).ok().and_then(|fd| fstat(fd.as_fd()).ok());
    let destination_is_dir = existing.as_ref().is_some_and(is_dir);
    let target = if metadata.is_dir() {
        if !options.recursive {
            return Err(Error::Config(format!("{} is a directory and recursive copy is off", host_source.display())));
        }
        if existing.is_some() && !destination_is_dir {
            return Err(Error::InvalidArgument(format!("cannot copy the directory {} onto {}, a file in the box (as docker cp)", host_source.display(), destination.path.display())));
        }
        if destination_is_dir && !contents_only { destination.path.join(base_name(host_source)?) } else { destination.path.clone() }
    } else if destination_is_dir {
        destination.path.join(base_name(host_source)?)
    } else if destination.trailing_slash {
        return Err(Error::NotFound(format!("directory {} does not exist in the box", destination.path.display())));
    } else {
        destination.path.clone()
    };
    let (parent, name) = split(&target);
    let parent_fd = open_in_root(root.as_fd(), &parent, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|error| in_box(&parent, &error))?;
    same_filesystem(root.as_fd(), parent_fd.as_fd(), &parent)?;
    put(parent_fd.as_fd(), &name, host_source, &target, options, box_root)
}

/// Copies into a box stay on its own root filesystem: its volumes, /proc, /sys, /dev and the
/// host's directories a `host://` image shares are other mounts, however a path or a symlink in
/// the box reaches them. A copy is made with the runtime's powers, not box root's: in a volume
/// it could write host files the box itself may not (as BoxLite, which refuses destinations
/// under a box's mounts).
fn same_filesystem(root: BorrowedFd<'_>, dir: BorrowedFd<'_>, shown: &Path) -> Result<()> {
    let dir_status = fstat(dir).map_err(|error| in_box(shown, &error))?;
    on_filesystem_of(root, &dir_status, shown)
}

/// As [`same_filesystem`], for what `status` describes (an entry of `dir`: a mount point's is
/// the mounted filesystem's).
fn on_filesystem_of(dir: BorrowedFd<'_>, status: &libc::stat, shown: &Path) -> Result<()> {
    let dir_status = fstat(dir).map_err(|error| in_box(shown, &error))?;
    if dir_status.st_dev != status.st_dev {
        return Err(Error::InvalidArgument(format!("{} is not on the box's own filesystem (it is in a volume, /proc, /sys, /dev or a host directory the image shares): copy the volume's files on the host", shown.display())));
    }
    Ok(())
}

/// The filesystems of the box's /proc, /sys, /dev and /dev/pts: the kernel's views and devices.
/// A copy out reads what the box sees (its volumes too) but never these, however a path or a
/// symlink reaches them: it reads with the runtime's powers, and /proc/self there is the
/// runtime's own process.
fn kernel_views(root: BorrowedFd<'_>) -> Vec<libc::dev_t> {
    ["/proc", "/sys", "/dev", "/dev/pts"]
        .iter()
        .filter_map(|path| open_in_root(root, Path::new(path), libc::O_PATH | libc::O_DIRECTORY, 0).ok())
        .filter_map(|fd| fstat(fd.as_fd()).ok())
        .map(|status| status.st_dev)
        .collect()
}

fn not_a_kernel_view(views: &[libc::dev_t], status: &libc::stat, shown: &Path) -> Result<()> {
    if views.contains(&status.st_dev) {
        return Err(Error::InvalidArgument(format!("{} is in the box's /proc, /sys or /dev, which are not copied", shown.display())));
    }
    Ok(())
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: fstat fills a zeroed stat we own.
    unsafe {
        let mut status: libc::stat = std::mem::zeroed();
        if libc::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut status) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(status)
    }
}

/// Writes `host` as `name` in the box directory `dir` (box path `shown`, for messages).
fn put(dir: BorrowedFd<'_>, name: &Path, host: &Path, shown: &Path, options: CopyOptions, box_root: Option<u32>) -> Result<()> {
    let metadata = if options.follow_symlinks { std::fs::metadata(host) } else { std::fs::symlink_metadata(host) }
        .map_err(|error| on_host("read", host, &error))?;
    let existing = stat_at(dir, name).map_err(|error| in_box(shown, &error))?;
    if let Some(status) = &existing {
        on_filesystem_of(dir, status, shown)?;
    }
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        match existing {
            Some(status) if is_dir(&status) => {}
            Some(status) => {
                replace(dir, name, &status, shown, options)?;
                resolve::mkdir_at(dir, name, metadata.mode() & 0o7777).map_err(|error| in_box(shown, &error))?;
                give(dir, name, box_root).map_err(|error| in_box(shown, &error))?;
            }
            None => {
                resolve::mkdir_at(dir, name, metadata.mode() & 0o7777).map_err(|error| in_box(shown, &error))?;
                give(dir, name, box_root).map_err(|error| in_box(shown, &error))?;
            }
        }
        let child_dir = open_at(dir, name, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|error| in_box(shown, &error))?;
        // Like `docker cp -L`: only the source itself is followed, never links inside it.
        let inner = CopyOptions { follow_symlinks: false, ..options };
        for entry in std::fs::read_dir(host).map_err(|error| on_host("list", host, &error))? {
            let entry = entry.map_err(|error| on_host("list", host, &error))?;
            let child = PathBuf::from(entry.file_name());
            put(child_dir.as_fd(), &child, &entry.path(), &shown.join(&child), inner, box_root)?;
        }
        return Ok(());
    }
    if let Some(status) = existing {
        replace(dir, name, &status, shown, options)?;
    }
    if file_type.is_symlink() {
        let target = std::fs::read_link(host).map_err(|error| on_host("read link", host, &error))?;
        resolve::symlink_at(&target, dir, name).map_err(|error| in_box(shown, &error))?;
        return give(dir, name, box_root).map_err(|error| in_box(shown, &error));
    }
    if !file_type.is_file() {
        return Err(Error::InvalidArgument(format!("{} is a special file (device, fifo or socket) and is not copied", host.display())));
    }
    let mut source = File::open(host).map_err(|error| on_host("open", host, &error))?;
    let created = open_at(dir, name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600).map_err(|error| in_box(shown, &error))?;
    let mut target = File::from(created);
    let written = io::copy(&mut source, &mut target).and_then(|_| {
        // Owned (through the open file, whatever its name now leads to) before the mode is
        // set: a change of owner clears setuid and setgid bits.
        if let Some(owner) = box_root {
            std::os::unix::fs::fchown(&target, Some(owner), Some(owner))?;
        }
        target.set_permissions(std::fs::Permissions::from_mode(metadata.mode() & 0o7777))
    });
    // A file that could not be written whole (the box's disk is full, say) is not left half.
    if let Err(error) = written {
        let _ = resolve::unlink_at(dir, name, false);
        return Err(in_box(shown, &error));
    }
    Ok(())
}

/// Owns the entry `name` of `dir` (never following a symlink) by the box's root user.
fn give(dir: BorrowedFd<'_>, name: &Path, box_root: Option<u32>) -> io::Result<()> {
    let Some(owner) = box_root else { return Ok(()) };
    let name = std::ffi::CString::new(name.as_os_str().as_encoded_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: fchownat on a directory we hold and a valid C string; AT_SYMLINK_NOFOLLOW.
    let code = unsafe { libc::fchownat(std::os::fd::AsRawFd::as_raw_fd(&dir), name.as_ptr(), owner, owner, libc::AT_SYMLINK_NOFOLLOW) };
    if code < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes room for a new entry where `status` is, when overwriting is allowed.
fn replace(dir: BorrowedFd<'_>, name: &Path, status: &libc::stat, shown: &Path, options: CopyOptions) -> Result<()> {
    if !options.overwrite {
        return Err(Error::AlreadyExists(format!("{} exists in the box and overwrite is off", shown.display())));
    }
    if is_dir(status) {
        return Err(Error::InvalidArgument(format!("{} is a directory in the box; it is not replaced by a file", shown.display())));
    }
    resolve::unlink_at(dir, name, false).map_err(|error| in_box(shown, &error))
}

/// Copies `box_source` out of the box whose root is `root` to `host_destination`. Blocking.
pub fn copy_out(root: &OwnedFd, box_source: &str, host_destination: &Path, options: CopyOptions) -> Result<()> {
    let source = box_path(box_source)?;
    let host_destination = host_path(host_destination)?;
    let views = kernel_views(root.as_fd());
    let (parent, name) = split(&source.path);
    let (dir, name): (OwnedFd, PathBuf) = if source.path == Path::new("/") {
        (open_in_root(root.as_fd(), Path::new("/"), libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|error| in_box(&source.path, &error))?, PathBuf::from("."))
    } else {
        let parent_fd = open_in_root(root.as_fd(), &parent, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|error| in_box(&parent, &error))?;
        not_a_kernel_view(&views, &fstat(parent_fd.as_fd()).map_err(|error| in_box(&parent, &error))?, &parent)?;
        (parent_fd, name)
    };
    let mut status = stat_at(dir.as_fd(), &name).map_err(|error| in_box(&source.path, &error))?.ok_or_else(|| Error::NotFound(format!("{} does not exist in the box", source.path.display())))?;
    let followed;
    let (dir, name) = if is_symlink(&status) && options.follow_symlinks {
        followed = open_in_root(root.as_fd(), &source.path, libc::O_PATH, 0).map_err(|error| in_box(&source.path, &error))?;
        status = fstat(followed.as_fd()).map_err(|error| in_box(&source.path, &error))?;
        (followed.as_fd(), PathBuf::from(""))
    } else {
        (dir.as_fd(), name)
    };
    not_a_kernel_view(&views, &status, &source.path)?;
    let host_existing = std::fs::metadata(host_destination).ok();
    let host_is_dir = host_existing.as_ref().is_some_and(std::fs::Metadata::is_dir);
    let target = if is_dir(&status) {
        if !options.recursive {
            return Err(Error::Config(format!("{} is a directory and recursive copy is off", source.path.display())));
        }
        if host_existing.is_some() && !host_is_dir {
            return Err(Error::InvalidArgument(format!("cannot copy the directory {} onto {}, a file on the host (as docker cp)", source.path.display(), host_destination.display())));
        }
        if host_is_dir && !source.contents_only { host_destination.join(base_name(&source.path)?) } else { host_destination.to_path_buf() }
    } else if host_is_dir {
        host_destination.join(base_name(&source.path)?)
    } else if host_destination.to_string_lossy().ends_with('/') {
        return Err(Error::NotFound(format!("directory {} does not exist on the host", host_destination.display())));
    } else {
        host_destination.to_path_buf()
    };
    get(dir, &name, &status, &source.path, &target, options, &views)
}

/// Opens `name` in `dir`; an empty name means `dir` itself (a followed symlink's target).
fn open_entry(dir: BorrowedFd<'_>, name: &Path, flags: i32) -> io::Result<OwnedFd> {
    if name.as_os_str().is_empty() {
        let path = resolve::c_path(Path::new(&format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir))))?;
        // SAFETY: reopening our own O_PATH descriptor through its /proc entry.
        let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        return Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) });
    }
    open_at(dir, name, flags, 0)
}

fn get(dir: BorrowedFd<'_>, name: &Path, status: &libc::stat, shown: &Path, host: &Path, options: CopyOptions, views: &[libc::dev_t]) -> Result<()> {
    let host_existing = std::fs::symlink_metadata(host).ok();
    if is_dir(status) {
        // Opened first: a directory the box's files do not let this runtime read makes nothing.
        let child_dir = open_entry(dir, name, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|error| in_box(shown, &error))?;
        match host_existing {
            Some(metadata) if metadata.is_dir() => {}
            Some(_) if !options.overwrite => return Err(Error::AlreadyExists(format!("{} exists on the host and overwrite is off", host.display()))),
            Some(_) => {
                std::fs::remove_file(host).map_err(|error| on_host("replace", host, &error))?;
                std::fs::create_dir(host).map_err(|error| on_host("create", host, &error))?;
            }
            None => std::fs::create_dir(host).map_err(|error| on_host("create", host, &error))?,
        }
        let _ = std::fs::set_permissions(host, std::fs::Permissions::from_mode(status.st_mode & 0o1777));
        let listing = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&child_dir)));
        for entry in std::fs::read_dir(&listing).map_err(|error| in_box(shown, &error))? {
            let entry = entry.map_err(|error| in_box(shown, &error))?;
            let child = PathBuf::from(entry.file_name());
            let child_status = stat_at(child_dir.as_fd(), &child).map_err(|error| in_box(shown, &error))?;
            if let Some(child_status) = child_status {
                not_a_kernel_view(views, &child_status, &shown.join(&child))?;
                get(child_dir.as_fd(), &child, &child_status, &shown.join(&child), &host.join(&child), options, views)?;
            }
        }
        return Ok(());
    }
    if let Some(metadata) = host_existing {
        if !options.overwrite {
            return Err(Error::AlreadyExists(format!("{} exists on the host and overwrite is off", host.display())));
        }
        if metadata.is_dir() {
            return Err(Error::InvalidArgument(format!("{} is a directory on the host; it is not replaced by a file", host.display())));
        }
        std::fs::remove_file(host).map_err(|error| on_host("replace", host, &error))?;
    }
    if is_symlink(status) {
        let target = resolve::read_link_at(dir, name).map_err(|error| in_box(shown, &error))?;
        return std::os::unix::fs::symlink(target, host).map_err(|error| on_host("create", host, &error));
    }
    if !is_regular(status) {
        return Err(Error::InvalidArgument(format!("{} is a special file (device, fifo or socket) and is not copied", shown.display())));
    }
    let source = open_regular(dir, name, status).map_err(|error| in_box(shown, &error))?;
    let mut target = File::create(host).map_err(|error| on_host("create", host, &error))?;
    io::copy(&mut File::from(source).take(status.st_size as u64), &mut target).map_err(|error| on_host("write", host, &error))?;
    // No setuid, setgid or sticky bits: the host process is root, and the box chose the content.
    target.set_permissions(std::fs::Permissions::from_mode(status.st_mode & 0o777)).map_err(|error| on_host("chmod", host, &error))
}

/// Opens the regular file `status` described, refusing whatever the box swapped in since
/// (a fifo would block the host, a device would stream forever): opened without blocking and
/// without a controlling terminal, then checked to be that same regular file.
fn open_regular(dir: BorrowedFd<'_>, name: &Path, status: &libc::stat) -> io::Result<OwnedFd> {
    let fd = open_entry(dir, name, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)?;
    let now = fstat(fd.as_fd())?;
    if !is_regular(&now) || now.st_dev != status.st_dev || now.st_ino != status.st_ino {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the file changed while it was being copied"));
    }
    // SAFETY: fcntl on a descriptor we own, clearing O_NONBLOCK for the plain reads that follow.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::F_SETFL, 0) };
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_errors_cross_to_the_shim_and_back() {
        for options in [CopyOptions::default(), CopyOptions { recursive: false, overwrite: false, follow_symlinks: true }] {
            assert_eq!(CopyOptions::parse(&options.argument()), Some(options));
        }
        assert_eq!(CopyOptions::parse("recursive,sideways"), None);
        let error = Error::AlreadyExists("/a exists in the box\nand overwrite is off".to_string());
        assert_eq!(FileError::from_line(&error.to_line()), Error::AlreadyExists("/a exists in the box and overwrite is off".to_string()));
        assert_eq!(FileError::from_line("something else"), Error::Storage("something else".to_string()));
    }

    #[test]
    fn box_paths_are_cleaned_and_guarded() {
        let path = box_path("/a/../b/./c/").expect("valid");
        assert_eq!((path.path, path.trailing_slash, path.contents_only), (PathBuf::from("/b/c"), true, false));
        assert!(box_path("/src/.").expect("valid").contents_only);
        assert_eq!(box_path("../../etc").expect("valid").path, PathBuf::from("/etc"));
        assert!(matches!(box_path("/proc/1/mem"), Err(Error::InvalidArgument(_))));
        assert!(matches!(box_path("/x/../sys/kernel"), Err(Error::InvalidArgument(_))));
        assert!(matches!(box_path(""), Err(Error::Config(_))));
        assert!(matches!(host_path(Path::new("")), Err(Error::Config(_))));
    }
}
