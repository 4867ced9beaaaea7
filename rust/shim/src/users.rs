//! Resolves a user spec (`name`, `uid`, `name:group`, `uid:gid`) against the box's own
//! `/etc/passwd` and `/etc/group`. Parsed by hand: NSS would load libraries from the box.

use std::fs;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
    pub name: Option<String>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn passwd_entries(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: fields[0].to_string(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                home: fields[5].to_string(),
            })
        })
        .collect()
}

/// (name, gid, members)
fn group_entries(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 {
                return None;
            }
            let members = fields[3].split(',').filter(|member| !member.is_empty()).map(str::to_string).collect();
            Some((fields[0].to_string(), fields[2].parse().ok()?, members))
        })
        .collect()
}

/// The box's files are untrusted: read only a regular file, never follow a symlink, never
/// block (a fifo would stall the init), and never more than [`MAX_ACCOUNT_FILE`] bytes.
fn read_account_file(path: &str) -> String {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let opened = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path);
    let Ok(file) = opened else { return String::new() };
    if !file.metadata().is_ok_and(|metadata| metadata.is_file()) {
        return String::new();
    }
    let mut text = String::new();
    let _ = file.take(MAX_ACCOUNT_FILE).read_to_string(&mut text);
    text
}

const MAX_ACCOUNT_FILE: u64 = 4 << 20;

/// The box's account files as last read. A file is read again when its identity, size or
/// times changed, or when it changed so recently that a same-size edit within the filesystem's
/// timestamp granularity could hide behind equal times; otherwise a resolve costs two stats.
pub struct Accounts {
    passwd: AccountFile,
    group: AccountFile,
    /// How many ids the box's user namespace maps (from 0); `None` without one.
    mapped: Option<u32>,
}

#[derive(Default)]
struct AccountFile {
    stamp: Option<[i64; 7]>,
    text: String,
}

/// Changes older than this are trusted to show in a file's times: well above the coarse
/// clock tick (at most 10 ms) that stamps them.
const SETTLED_NANOS: i64 = 100_000_000;

impl AccountFile {
    fn refresh(&mut self, path: &std::ffi::CStr) {
        let stamp = settled_stamp(path);
        if stamp.is_none() || stamp != self.stamp {
            self.text = read_account_file(&path.to_string_lossy());
            self.stamp = stamp;
        }
    }
}

/// (device, inode, size, mtime, mtime ns, ctime, ctime ns) of a regular file whose last change
/// is settled, without following a symlink.
fn settled_stamp(path: &std::ffi::CStr) -> Option<[i64; 7]> {
    // SAFETY: lstat fills a local stat buffer from a valid C string path.
    let status = unsafe {
        let mut status: libc::stat = std::mem::zeroed();
        (libc::lstat(path.as_ptr(), &mut status) == 0).then_some(status)
    }?;
    let mut now: libc::timespec = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let age = (now.tv_sec - status.st_ctime) * 1_000_000_000 + (now.tv_nsec - status.st_ctime_nsec);
    let settled = age > SETTLED_NANOS;
    #[expect(clippy::cast_possible_wrap, reason = "device and inode numbers are only compared")]
    let stamp = [status.st_dev as i64, status.st_ino as i64, status.st_size, status.st_mtime, status.st_mtime_nsec, status.st_ctime, status.st_ctime_nsec];
    ((status.st_mode & libc::S_IFMT) == libc::S_IFREG && settled).then_some(stamp)
}

impl Accounts {
    /// For a box whose user namespace maps `mapped` ids from 0 (`None`: it has none).
    pub fn new(mapped: Option<u32>) -> Self {
        Self { passwd: AccountFile::default(), group: AccountFile::default(), mapped }
    }

    pub fn resolve(&mut self, spec: Option<&str>) -> Result<Identity, String> {
        self.passwd.refresh(c"/etc/passwd");
        self.group.refresh(c"/etc/group");
        let identity = resolve_in(spec, &self.passwd.text, &self.group.text)?;
        if let Some(count) = self.mapped.filter(|count| identity.uid >= *count || identity.gid >= *count) {
            let spec = spec.unwrap_or("0");
            return Err(format!(
                "user {spec:?} (uid {}, gid {}) does not exist in this box: its user namespace has ids 0 to {} only (a runtime that runs as an ordinary user without subordinate ids gives its boxes box root alone)",
                identity.uid,
                identity.gid,
                count - 1
            ));
        }
        Ok(identity)
    }
}

pub fn resolve_in(spec: Option<&str>, passwd: &str, group: &str) -> Result<Identity, String> {
    let spec = spec.unwrap_or("0").trim();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let users = passwd_entries(passwd);
    let groups = group_entries(group);
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => users.iter().find(|entry| entry.uid == uid),
        Err(_) => Some(
            users
                .iter()
                .find(|entry| entry.name == user_part)
                .ok_or_else(|| format!("unknown user {user_part:?}: not in the box's /etc/passwd"))?,
        ),
    };
    let uid = entry.map_or_else(|| user_part.parse::<u32>().unwrap_or(0), |entry| entry.uid);
    let gid = match group_part {
        Some(group_spec) => match group_spec.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|(name, _, _)| name == group_spec)
                .map(|(_, gid, _)| *gid)
                .ok_or_else(|| format!("unknown group {group_spec:?}: not in the box's /etc/group"))?,
        },
        None => entry.map_or(0, |entry| entry.gid),
    };
    let name = entry.map(|entry| entry.name.clone());
    let mut supplementary: Vec<u32> = match (&name, group_part) {
        (Some(name), None) => groups
            .iter()
            .filter(|(_, _, members)| members.iter().any(|member| member == name))
            .map(|(_, gid, _)| *gid)
            .collect(),
        _ => Vec::new(),
    };
    supplementary.retain(|candidate| *candidate != gid);
    supplementary.insert(0, gid);
    let home = entry.map_or_else(|| "/".to_string(), |entry| entry.home.clone());
    Ok(Identity { uid, gid, groups: supplementary, home, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nalice:x:1000:\nwheel:x:10:alice\n";

    #[test]
    fn names_numbers_and_groups_resolve() {
        let root = resolve_in(None, PASSWD, GROUP).expect("root");
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let alice = resolve_in(Some("alice"), PASSWD, GROUP).expect("alice");
        assert_eq!((alice.uid, alice.gid, alice.groups.clone()), (1000, 1000, vec![1000, 10]));
        let numeric = resolve_in(Some("1000:10"), PASSWD, GROUP).expect("numeric");
        assert_eq!((numeric.uid, numeric.gid, numeric.groups), (1000, 10, vec![10]));
        let unknown_uid = resolve_in(Some("4242"), PASSWD, GROUP).expect("unlisted uid");
        assert_eq!((unknown_uid.uid, unknown_uid.gid, unknown_uid.home.as_str()), (4242, 0, "/"));
        let by_group_name = resolve_in(Some("nobody:wheel"), PASSWD, GROUP).expect("group name");
        assert_eq!((by_group_name.uid, by_group_name.gid), (65534, 10));
    }

    #[test]
    fn an_account_file_edited_in_place_is_read_again() {
        let path = std::env::temp_dir().join(format!("boxlite-passwd-{}", std::process::id()));
        let c_path = std::ffi::CString::new(path.to_string_lossy().as_bytes()).expect("path");
        let mut file = AccountFile::default();
        std::fs::write(&path, "root:x:0:0::/root:/bin/sh\n").expect("write");
        file.refresh(&c_path);
        assert!(file.text.contains("/root"));
        // Same size, same second: only the recency rule catches it.
        std::fs::write(&path, "root:x:0:0::/ROOT:/bin/sh\n").expect("rewrite");
        file.refresh(&c_path);
        assert!(file.text.contains("/ROOT"));
        std::fs::remove_file(&path).expect("remove");
        file.refresh(&c_path);
        assert!(file.text.is_empty());
    }

    #[test]
    fn ids_past_the_boxs_map_are_refused_by_name() {
        let error = Accounts::new(Some(1)).resolve(Some("4242:4242")).unwrap_err();
        assert!(error.contains("\"4242:4242\" (uid 4242, gid 4242) does not exist in this box"), "{error}");
        assert_eq!(Accounts::new(Some(1)).resolve(None).map(|identity| identity.uid), Ok(0));
        assert!(Accounts::new(None).resolve(Some("4242:4242")).is_ok());
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(resolve_in(Some("mallory"), PASSWD, GROUP).unwrap_err().contains("mallory"));
        assert!(resolve_in(Some("alice:staff"), PASSWD, GROUP).unwrap_err().contains("staff"));
    }
}
