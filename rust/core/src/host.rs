//! What this host permits the runtime, asked once when a runtime opens: whether it runs as root
//! or as an ordinary user, whether that user may make user namespaces and has subordinate ids,
//! and which cgroups it may manage. The engine picks its mechanisms from the answer (docs/rootless.md says which); no
//! other part asks who the runtime runs as.

use std::path::Path;

use boxlite_protocol::{IdMap, SubordinateIds};

use crate::cgroups::CgroupLayout;
use crate::error::{Error, Result};

/// The settings that forbid ordinary users' user namespaces: (file, the value that forbids,
/// the fix).
const USER_NAMESPACE_SETTINGS: &[(&str, &str, &str)] = &[
    ("/proc/sys/kernel/unprivileged_userns_clone", "0", "sysctl -w kernel.unprivileged_userns_clone=1"),
    ("/proc/sys/user/max_user_namespaces", "0", "sysctl -w user.max_user_namespaces=15000"),
    (
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
        "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile with `userns,` for this Python",
    ),
];

#[derive(Debug, Clone)]
pub struct HostPermits {
    /// The runtime runs as an ordinary user: its shim spawner makes a user namespace in which
    /// the user is root, and spawns every box's shim into it (`boxlite_protocol::ROOTLESS_ARGUMENT`).
    pub rootless: bool,
    /// Why boxes get no cgroups here (and so no limits), when they cannot.
    pub cgroups_refused: Option<String>,
    /// Why boxes cannot have disks of their own here (`disk_size_gb`), when they cannot; else
    /// the `mkfs.ext4` that formats them.
    pub disks: std::result::Result<std::path::PathBuf, String>,
}

impl HostPermits {
    pub fn detect(cgroups: &CgroupLayout) -> Self {
        // SAFETY: geteuid cannot fail.
        let rootless = unsafe { libc::geteuid() } != 0;
        let cgroups_refused = rootless.then(|| cgroups_refused(cgroups)).flatten();
        Self { rootless, cgroups_refused, disks: disk_formatter(rootless) }
    }

    /// The refusal of a box that asks for limits where it cannot have them.
    pub fn check_limits(&self, asked: &[&str]) -> Result<()> {
        match (&self.cgroups_refused, asked.is_empty()) {
            (Some(why), false) => Err(Error::Unsupported(format!("{} limits need cgroups: {why}", asked.join(", ")))),
            _ => Ok(()),
        }
    }
}

/// Why an ordinary user may not make boxes' cgroups: a hierarchy whose group for boxes it cannot
/// write to, with how to grant it; `None` if it may.
fn cgroups_refused(cgroups: &CgroupLayout) -> Option<String> {
    let mut hierarchies = cgroups.limiting_hierarchies().peekable();
    hierarchies.peek()?;
    let writable = |path: &Path| accessible(path, libc::W_OK).is_ok();
    let closed: Vec<String> = hierarchies.filter(|(_, _, root)| !writable(&root.join("boxlite")) && !writable(root)).map(|(_, _, root)| root.display().to_string()).collect();
    if closed.is_empty() {
        return None;
    }
    Some(format!(
        "this user may not make groups in {} (ask an administrator to delegate a cgroup: on cgroup v2 run under a systemd unit or scope with Delegate=yes, e.g. `systemd-run --user --scope -p Delegate=yes python ...`; on v1 or v2, make a group in each hierarchy, give it to this user with chown -R, and name it in {})",
        closed.join(", "),
        crate::cgroups::PARENT_VARIABLE
    ))
}

/// The `mkfs.ext4` that formats boxes' disks, or why boxes cannot have disks: a disk is an
/// image attached to a loop device, which only root may attach.
fn disk_formatter(rootless: bool) -> std::result::Result<std::path::PathBuf, String> {
    if rootless {
        return Err("a box's disk is attached to a loop device, which only root may attach".to_string());
    }
    if accessible(Path::new("/dev/loop-control"), libc::R_OK | libc::W_OK).is_err() {
        return Err("this host has no /dev/loop-control to attach boxes' disks to (load the loop module, or give a container the loop devices)".to_string());
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join("mkfs.ext4"))
        .find(|candidate| accessible(candidate, libc::X_OK).is_ok())
        .ok_or_else(|| "formatting boxes' disks needs mkfs.ext4 (the Debian package e2fsprogs)".to_string())
}

/// The limit on open descriptors boxes get: the hard limit this process had before
/// [`raise_open_files_limit`], as soft and hard limit (as containers get a high one from Docker).
static BOX_OPEN_FILES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The kernel's most descriptors per process (`fs.nr_open`).
fn most_open_files() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|text| text.trim().parse().ok()).unwrap_or(1 << 20)
}

/// Raises this process's limit on open descriptors as far as it may: where it may raise its
/// hard limit (as root with CAP_SYS_RESOURCE), to the kernel's most; otherwise its soft limit
/// to its hard one. Each running box holds [`DESCRIPTORS_PER_BOX`] here, so a soft limit of
/// 1024 is reached at about 330 boxes and a hard one of 20,000 at about 6,600. Boxes get
/// [`box_open_files_limit`], not this.
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let most = most_open_files();
    BOX_OPEN_FILES.get_or_init(|| limit.rlim_max.min(most));
    let raised = [libc::rlimit { rlim_cur: most, rlim_max: most }, libc::rlimit { rlim_cur: limit.rlim_max.min(most), rlim_max: limit.rlim_max }];
    // SAFETY: setrlimit reads one rlimit from a valid pointer.
    if let Some(now) = raised.iter().find(|raised| raised.rlim_cur > limit.rlim_cur && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, *raised) } == 0) {
        log::debug!("open descriptors: soft limit raised from {} to {}", limit.rlim_cur, now.rlim_cur);
    }
}

/// Descriptors a box holds in the runtime while it runs: its lifeline (which carries its exec
/// requests too, and says when its init is gone) and its network's two sockets. A detached box
/// holds one more: a pidfd and a control connection take its lifeline's place.
pub const DESCRIPTORS_PER_BOX: usize = 3;

/// Refuses a start when this process could not open the descriptors it takes: a box's own
/// ([`DESCRIPTORS_PER_BOX`]) and those a start uses for a moment (its start-up socket and pipe,
/// its cgroups' membership files). Without this, a start past the limit failed on whichever of
/// them came last, with a message about that.
pub fn check_room_for_a_box() -> crate::Result<()> {
    const ROOM: usize = 16;
    let exhausted = |_| {
        crate::Error::ResourceExhausted(format!(
            "this process holds nearly all the {} open descriptors it may (RLIMIT_NOFILE): each running box holds {DESCRIPTORS_PER_BOX} and each running execution 3 or 4; stop or remove boxes, or raise the limit (ulimit -n; as root the runtime raises it to the kernel's most itself)",
            open_files_limit()
        ))
    };
    let first = std::fs::File::open("/dev/null").map_err(exhausted)?;
    let held: std::io::Result<Vec<std::fs::File>> = (1..ROOM).map(|_| first.try_clone()).collect();
    held.map(drop).map_err(exhausted)
}

/// This process's (soft) limit on open descriptors, as the runtime raised it; 1024, the usual
/// default, if it cannot be read.
pub fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the rlimit we own.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if known { limit.rlim_cur } else { 1024 }
}

/// The limit on open descriptors (soft and hard) a box's processes start with: the hard limit
/// of this process before the runtime raised it.
pub fn box_open_files_limit() -> u64 {
    *BOX_OPEN_FILES.get_or_init(|| {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit fills the rlimit we own.
        let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        if known { limit.rlim_max.min(most_open_files()) } else { 1024 }
    })
}

/// Whether this process's user may use `path` as `mode` (`access(2)`'s `R_OK`, `W_OK`,
/// `X_OK`): what an ordinary user's runtime may touch is that user's to decide.
pub fn accessible(path: &Path, mode: libc::c_int) -> std::io::Result<()> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: access on a valid C string.
    if unsafe { libc::access(path.as_ptr(), mode) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The subordinate ids an ordinary user's boxes are to have ([`subordinate_ids`]).
#[derive(Debug, Clone, Copy)]
pub struct WantedIds {
    pub ids: SubordinateIds,
    /// Asked for by name: boxes without them are an error, not one id and a warning.
    pub required: bool,
}

/// The variable that says whether an ordinary user's boxes get that user's subordinate ids:
/// `1` requires them, `0` gives boxes one id; unset, they get them where the user has them.
pub const SUBORDINATE_IDS_VARIABLE: &str = "BOXLITE_SUBORDINATE_IDS";

/// The subordinate ids an ordinary user's boxes are to have ([`SUBORDINATE_IDS_VARIABLE`]): its
/// first ranges in /etc/subuid and /etc/subgid (by name or uid), at most 65,535 ids, which
/// `newuidmap` and `newgidmap` map. Missing, they are an error that says what to add or install
/// where they are required, else logged with it.
pub fn subordinate_ids(rootless: bool) -> Result<Option<WantedIds>> {
    let setting = std::env::var(SUBORDINATE_IDS_VARIABLE).unwrap_or_default();
    if !rootless || setting == "0" {
        return Ok(None);
    }
    let required = setting == "1";
    match find_subordinate_ids() {
        Ok(ids) => Ok(Some(WantedIds { ids, required })),
        Err(why) if required => Err(Error::Config(format!("{SUBORDINATE_IDS_VARIABLE}=1: {why}"))),
        Err(why) => {
            log::info!("boxes do not get this user's subordinate ids: {why}");
            Ok(None)
        }
    }
}

fn find_subordinate_ids() -> std::result::Result<SubordinateIds, String> {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let names = [user_name(uid), Some(uid.to_string())];
    // Box ids 1 to 65,535: an image's ids (`nobody` is 65,534) all have one.
    let count = IdMap::BOX_IDS - 1;
    let range = |file: &str| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        first_range(&text, &names, count).ok_or_else(|| format!("user {uid} has no range of {count} ids in {file} (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 <user>)"))
    };
    let (uid_start, gid_start) = (range("/etc/subuid")?, range("/etc/subgid")?);
    if let Some(missing) = SubordinateIds::MAPPERS.into_iter().find(|mapper| SubordinateIds::mapper(mapper).is_none()) {
        return Err(format!("{missing} is not installed (as root: apt-get install uidmap)"));
    }
    Ok(SubordinateIds { uid: uid_start, gid: gid_start, count })
}

/// The start of the first range of at least `count` ids in /etc/subuid or /etc/subgid (`text`)
/// for one of `names` (the user's name, its uid).
fn first_range(text: &str, names: &[Option<String>], count: u32) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let owner = fields.next()?;
        let (start, size) = (fields.next()?.parse().ok()?, fields.next()?.parse::<u32>().ok()?);
        (names.iter().flatten().any(|name| name == owner) && size >= count).then_some(start)
    })
}

/// The name of user `uid` in the host's user database.
fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 4096];
    // SAFETY: an all-zero passwd is a valid value for getpwuid_r to fill.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `entry` and `buffer`, both ours and of the given sizes.
    let code = unsafe { libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if code != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buffer`.
    Some(unsafe { std::ffi::CStr::from_ptr(entry.pw_name) }.to_string_lossy().into_owned())
}

/// The error of an ordinary user's runtime that cannot make user namespaces: `reason` is the
/// shim's, followed by the host settings that forbid them and how to change each.
pub fn user_namespaces_refused(reason: &str) -> Error {
    refusal(reason, |file| std::fs::read_to_string(file).ok())
}

/// [`user_namespaces_refused`], with the settings read by `read`.
fn refusal(reason: &str, read: impl Fn(&str) -> Option<String>) -> Error {
    let forbidding: Vec<String> = USER_NAMESPACE_SETTINGS
        .iter()
        .filter(|(file, forbids, _)| read(file).is_some_and(|value| value.trim() == *forbids))
        .map(|(file, forbids, fix)| format!("{file} is {forbids} (as root: {fix})"))
        .collect();
    let settings = if forbidding.is_empty() { "no known host setting forbids them; is this process confined (a container, seccomp, AppArmor)?".to_string() } else { forbidding.join("; ") };
    Error::Unsupported(format!("boxes of an ordinary user need unprivileged user namespaces, which this host refuses ({reason}): {settings}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_subordinate_range_is_its_first_large_enough_line_by_name_or_uid() {
        let text = "other:100000:65536\nalice:300000:10\nalice:165536:65536\n1001:400000:70000\nbroken\n";
        let names = |name: &str, uid: &str| [Some(name.to_string()), Some(uid.to_string())];
        assert_eq!(first_range(text, &names("alice", "1000"), 65_535), Some(165_536), "too small a range is passed over");
        assert_eq!(first_range(text, &names("bob", "1001"), 65_535), Some(400_000));
        assert_eq!(first_range(text, &names("carol", "1002"), 65_535), None);
    }

    #[test]
    fn a_refusal_names_the_settings_that_forbid_user_namespaces_and_their_fixes() {
        let settings = |file: &str| match file {
            "/proc/sys/user/max_user_namespaces" => Some("0\n".to_string()),
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns" => Some("1\n".to_string()),
            "/proc/sys/kernel/unprivileged_userns_clone" => Some("1\n".to_string()),
            _ => None,
        };
        let message = refusal("No space left on device", settings).to_string();
        assert!(message.starts_with("unsupported: boxes of an ordinary user need unprivileged user namespaces, which this host refuses (No space left on device)"), "{message}");
        assert!(message.contains("/proc/sys/user/max_user_namespaces is 0 (as root: sysctl -w user.max_user_namespaces=15000)"), "{message}");
        assert!(message.contains("apparmor_restrict_unprivileged_userns is 1 (as root: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"), "{message}");
        assert!(!message.contains("unprivileged_userns_clone"), "a setting that allows them is not named: {message}");
        let unexplained = refusal("Operation not permitted", |_| None).to_string();
        assert!(unexplained.contains("no known host setting forbids them; is this process confined"), "{unexplained}");
    }
}
