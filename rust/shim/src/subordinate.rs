//! What the shim does for an ordinary user's runtime whose boxes have that user's subordinate
//! ids (`boxlite_protocol::SubordinateIds`): their files may belong to those ids, which the
//! runtime, an ordinary process, may neither give files to nor always read or remove. The shim becomes
//! root of a user namespace that maps them ([`userns::become_root_of_own_namespace`]), where it
//! may, and does one task there (`boxlite_protocol::subordinate_tasks`).

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use boxlite_protocol::{resolve, subordinate_tasks as tasks, Ownership, SubordinateIds};
use boxlite_trees::files::{CopyOptions, FileError};

use crate::userns;

/// Does `task` (one of `boxlite_protocol::subordinate_tasks`) with the ids and paths of the
/// command line; the process's exit code.
pub fn run(task: &str) -> i32 {
    let ids = std::env::args().nth(2).as_deref().and_then(SubordinateIds::parse);
    let paths: Vec<PathBuf> = std::env::args_os().skip(3).map(PathBuf::from).collect();
    let options = paths.last().and_then(|last| CopyOptions::parse(&last.to_string_lossy()));
    let outcome = match (task, ids, paths.as_slice(), options) {
        (tasks::REMOVE_TREE, Some(ids), [path], _) => remove_tree(ids, path).map_err(FileError::Storage),
        (tasks::GIVE_OWNERS, Some(ids), [dir], _) => give_owners(ids, dir).map_err(FileError::Storage),
        (tasks::COPY_TREE, Some(ids), [source, target], _) => copy_tree(ids, source, target).map_err(FileError::Storage),
        (tasks::PACK_TREE, Some(ids), [dir], _) => pack_tree(ids, dir).map_err(FileError::Storage),
        (tasks::COPY_IN, Some(ids), [source, destination, _], Some(options)) => copy_in(ids, source, &destination.to_string_lossy(), options),
        (tasks::COPY_OUT, Some(ids), [source, destination, _], Some(options)) => copy_out(ids, &source.to_string_lossy(), destination, options),
        _ => Err(FileError::InvalidArgument(format!("{task} needs subordinate ids and its paths"))),
    };
    match outcome {
        Ok(()) => 0,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "{}", error.to_line());
            1
        }
    }
}

/// The box's root directory, which the runtime passed as stdin.
fn box_root() -> Result<OwnedFd, FileError> {
    // SAFETY: dup of stdin, a descriptor this process holds; the copy is ours.
    let fd = unsafe { libc::fcntl(libc::STDIN_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(FileError::Storage(format!("the box's root did not come: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copies `source` on the host into the running box ([`tasks::COPY_IN`]): what it makes is box
/// root's, as the namespace's root makes it.
fn copy_in(ids: SubordinateIds, source: &Path, destination: &str, options: CopyOptions) -> Result<(), FileError> {
    let root = box_root()?;
    userns::become_root_of_own_namespace(Some(ids)).map_err(FileError::Storage)?;
    boxlite_trees::files::copy_in(&root, source, destination, options, None)
}

/// Copies `source` out of the running box to `destination` on the host ([`tasks::COPY_OUT`]).
fn copy_out(ids: SubordinateIds, source: &str, destination: &Path, options: CopyOptions) -> Result<(), FileError> {
    let root = box_root()?;
    userns::become_root_of_own_namespace(Some(ids)).map_err(FileError::Storage)?;
    boxlite_trees::files::copy_out(&root, source, destination, options)
}

/// Copies the tree at `source` to `target` ([`tasks::COPY_TREE`]).
fn copy_tree(ids: SubordinateIds, source: &Path, target: &Path) -> Result<(), String> {
    userns::become_root_of_own_namespace(Some(ids))?;
    let size = boxlite_trees::copy(source, target, None).map_err(|error| error.to_string())?;
    writeln!(std::io::stdout(), "{} {}", size.content_bytes, size.allocated_bytes).map_err(|error| format!("failed to report the copy's size: {error}"))
}

/// Writes the tree at `dir` to stdout as a layer tar ([`tasks::PACK_TREE`]): in the namespace,
/// files are owned by the box ids they have in the box.
fn pack_tree(ids: SubordinateIds, dir: &Path) -> Result<(), String> {
    userns::become_root_of_own_namespace(Some(ids))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    boxlite_trees::pack(dir, boxlite_trees::BoxIds::Same, &mut out).map_err(|error| error.to_string())?;
    out.flush().map_err(|error| format!("failed to write the layer of {}: {error}", dir.display()))
}

/// Removes the tree at `path` ([`tasks::REMOVE_TREE`]). A tree already gone is no error.
fn remove_tree(ids: SubordinateIds, path: &Path) -> Result<(), String> {
    userns::become_root_of_own_namespace(Some(ids))?;
    boxlite_trees::remove(path).map_err(|error| format!("failed to remove {}: {error}", path.display()))
}

/// Gives the files of the layer at `dir` the owners (box ids) that stdin's records name
/// ([`tasks::GIVE_OWNERS`]). Each file is reached from `dir` through real directories only,
/// never a symlink: a layer's own symlinks lead nowhere outside it.
fn give_owners(ids: SubordinateIds, dir: &Path) -> Result<(), String> {
    let mut records = Vec::new();
    std::io::stdin().read_to_end(&mut records).map_err(|error| format!("failed to read the owners: {error}"))?;
    let owners = Ownership::decode_all(&records).ok_or("the owners are not records of boxlite_protocol::Ownership")?;
    userns::become_root_of_own_namespace(Some(ids))?;
    let root = std::fs::File::open(dir).map(OwnedFd::from).map_err(|error| format!("failed to open {}: {error}", dir.display()))?;
    for owner in &owners {
        match give(&root, owner) {
            // A later entry of the layer replaced the file or a directory on its way: the
            // record names nothing the layer has.
            Err(error) if [libc::ENOENT, libc::ELOOP, libc::ENOTDIR].contains(&error.raw_os_error().unwrap_or(0)) => {}
            Err(error) => return Err(format!("failed to give {} to {}:{}: {error}", dir.join(&owner.path).display(), owner.uid, owner.gid)),
            Ok(()) => {}
        }
    }
    Ok(())
}

fn give(root: &OwnedFd, owner: &Ownership) -> std::io::Result<()> {
    let invalid = || std::io::Error::from(std::io::ErrorKind::InvalidInput);
    let name = owner.path.file_name().ok_or_else(invalid)?;
    let name = CString::new(name.as_bytes()).map_err(|_| invalid())?;
    let parent = owner.path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let parent = CString::new(parent.as_os_str().as_bytes()).map_err(|_| invalid())?;
    let parent = boxlite_protocol::openat2(root.as_fd(), &parent, libc::O_PATH | libc::O_DIRECTORY, 0, resolve::BENEATH | resolve::NO_SYMLINKS | resolve::NO_MAGICLINKS | resolve::NO_XDEV)?;
    // SAFETY: fchownat on a directory descriptor we hold and a valid name; never a link's target.
    if unsafe { libc::fchownat(parent.as_raw_fd(), name.as_ptr(), owner.uid, owner.gid, libc::AT_SYMLINK_NOFOLLOW) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let Some(mode) = owner.mode else { return Ok(()) };
    // A mode goes to a regular file or a fifo only, through a descriptor of that very file:
    // fchmodat would follow a symlink, wherever it led.
    let file = boxlite_protocol::openat2(parent.as_fd(), &name, libc::O_PATH | libc::O_NOFOLLOW, 0, resolve::BENEATH)?;
    // SAFETY: fstat fills a zeroed stat we own, from a descriptor we hold.
    let status = unsafe {
        let mut status: libc::stat = std::mem::zeroed();
        if libc::fstat(file.as_raw_fd(), &mut status) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        status
    };
    if !matches!(status.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFIFO) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "only a regular file or a fifo is given a mode"));
    }
    let through = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(|_| invalid())?;
    // SAFETY: chmod on a valid C string: the descriptor's /proc link, which names the file
    // opened above whatever its name leads to now.
    if unsafe { libc::chmod(through.as_ptr(), mode) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
