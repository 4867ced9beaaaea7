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

pub fn resolve(spec: Option<&str>) -> Result<Identity, String> {
    resolve_in(spec, &read_account_file("/etc/passwd"), &read_account_file("/etc/group"))
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
    fn unknown_names_are_errors() {
        assert!(resolve_in(Some("mallory"), PASSWD, GROUP).unwrap_err().contains("mallory"));
        assert!(resolve_in(Some("alice:staff"), PASSWD, GROUP).unwrap_err().contains("staff"));
    }
}
