//! Finds the hierarchy that offers each controller, from /proc/self/mountinfo.

use std::path::{Path, PathBuf};

use super::{Controller, Version};
use crate::error::{Error, Result};

/// Where each controller lives on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLayout {
    memory: Option<(Version, PathBuf)>,
    cpu: Option<(Version, PathBuf)>,
    cpu_accounting: Option<(Version, PathBuf)>,
    pids: Option<(Version, PathBuf)>,
    freezer: Option<(Version, PathBuf)>,
}

const ALL: [Controller; 5] = [Controller::Memory, Controller::Cpu, Controller::CpuAccounting, Controller::Pids, Controller::Freezer];

impl CgroupLayout {
    pub fn detect() -> Self {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let parent = std::env::var_os(super::PARENT_VARIABLE).filter(|parent| !parent.is_empty()).map(PathBuf::from);
        Self::from_mountinfo(&mountinfo, &membership, parent.as_deref(), |root| std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default())
    }

    /// Where boxes go in each hierarchy: inside this process's own group (v1), or beside it
    /// (v2, whose groups with processes cannot have children with controllers), so boxes stay
    /// within whatever limits the caller runs under; or in `parent` (a group path, the same in
    /// every hierarchy), when one was delegated for them. `membership` is /proc/self/cgroup;
    /// `read_controllers` gives the `cgroup.controllers` of a v2 root.
    pub fn from_mountinfo(mountinfo: &str, membership: &str, parent: Option<&Path>, read_controllers: impl Fn(&Path) -> String) -> Self {
        let own_path = |wanted: Option<&str>| -> PathBuf {
            if let Some(parent) = parent {
                return parent.to_path_buf();
            }
            let path = membership.lines().find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                let matches = match wanted {
                    Some(name) => controllers.split(',').any(|controller| controller == name),
                    None => controllers.is_empty(),
                };
                matches.then(|| PathBuf::from(path))
            });
            path.unwrap_or_else(|| PathBuf::from("/"))
        };
        let placed = |mount_point: &str, mount_root: &str, group: PathBuf| -> PathBuf {
            let relative = group.strip_prefix(mount_root).map(Path::to_path_buf).unwrap_or_default();
            let relative = relative.strip_prefix("/").map(Path::to_path_buf).unwrap_or(relative);
            Path::new(mount_point).join(relative)
        };
        let mut v1: Vec<(PathBuf, Vec<String>)> = Vec::new();
        let mut v2: Option<(PathBuf, Vec<String>)> = None;
        for line in mountinfo.lines() {
            let Some((before, after)) = line.split_once(" - ") else { continue };
            let fields: Vec<&str> = before.split(' ').collect();
            let (Some(mount_root), Some(mount_point)) = (fields.get(3), fields.get(4)) else { continue };
            let mut filesystem = after.split(' ');
            let (Some(fstype), _, Some(options)) = (filesystem.next(), filesystem.next(), filesystem.next()) else { continue };
            match fstype {
                "cgroup" => {
                    let controllers: Vec<String> = options.split(',').map(str::to_string).collect();
                    let group = controllers.iter().find_map(|option| {
                        ["memory", "cpu", "cpuacct", "pids", "freezer"].contains(&option.as_str()).then(|| own_path(Some(option)))
                    });
                    v1.push((placed(mount_point, mount_root, group.unwrap_or_else(|| PathBuf::from("/"))), controllers));
                }
                "cgroup2" => {
                    let controllers = read_controllers(Path::new(mount_point)).split_whitespace().map(str::to_string).collect();
                    let group = own_path(None);
                    let beside = match parent {
                        Some(parent) => parent.to_path_buf(),
                        None => group.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
                    };
                    v2 = Some((placed(mount_point, mount_root, beside), controllers));
                }
                _ => {}
            }
        }
        let find = |v2_name: &str, v1_name: &str| -> Option<(Version, PathBuf)> {
            if let Some((root, controllers)) = &v2 {
                if controllers.iter().any(|controller| controller == v2_name) {
                    return Some((Version::V2, root.clone()));
                }
            }
            v1.iter().find(|(_, options)| options.iter().any(|option| option == v1_name)).map(|(root, _)| (Version::V1, root.clone()))
        };
        // Every v2 group can be frozen (`cgroup.freeze`); v1 has a hierarchy for it. A host with
        // both uses v2's where v2 holds the box's other groups, v1's otherwise.
        let v2_holds_boxes = v2.as_ref().is_some_and(|(_, controllers)| ["memory", "cpu", "pids"].iter().any(|name| controllers.iter().any(|controller| controller == name)));
        let freezer = match &v2 {
            Some((root, _)) if v2_holds_boxes => Some((Version::V2, root.clone())),
            _ => v1.iter().find(|(_, options)| options.iter().any(|option| option == "freezer")).map(|(root, _)| (Version::V1, root.clone())),
        };
        Self { memory: find("memory", "memory"), cpu: find("cpu", "cpu"), cpu_accounting: find("cpu", "cpuacct"), pids: find("pids", "pids"), freezer }
    }

    fn slot(&self, controller: Controller) -> Option<&(Version, PathBuf)> {
        match controller {
            Controller::Memory => self.memory.as_ref(),
            Controller::Cpu => self.cpu.as_ref(),
            Controller::CpuAccounting => self.cpu_accounting.as_ref(),
            Controller::Pids => self.pids.as_ref(),
            Controller::Freezer => self.freezer.as_ref(),
        }
    }

    /// (controller, version, hierarchy root) for every controller found.
    pub fn hierarchies(&self) -> impl Iterator<Item = (Controller, Version, &Path)> {
        ALL.into_iter().filter_map(|controller| self.slot(controller).map(|(version, root)| (controller, *version, root.as_path())))
    }

    /// The hierarchies of the controllers that limit boxes (all but the freezer, which a box may
    /// go without: it only lets a running box be snapshotted).
    pub fn limiting_hierarchies(&self) -> impl Iterator<Item = (Controller, Version, &Path)> {
        self.hierarchies().filter(|(controller, _, _)| *controller != Controller::Freezer)
    }

    /// On v2, a controller must be enabled in the `cgroup.subtree_control` of every ancestor
    /// of `group`, from the hierarchy's root down to its parent.
    pub fn enable_v2_controllers(&self, group: &Path) -> Result<()> {
        let wanted: Vec<&str> = [(Controller::Memory, "memory"), (Controller::Cpu, "cpu"), (Controller::Pids, "pids")]
            .into_iter()
            .filter(|(controller, _)| matches!(self.slot(*controller), Some((Version::V2, _))))
            .map(|(_, name)| name)
            .collect();
        let Some((_, base)) = ALL.iter().find_map(|controller| self.slot(*controller).filter(|(version, _)| *version == Version::V2)) else {
            return Ok(());
        };
        let Some(parent) = group.parent() else { return Ok(()) };
        let relative = parent.strip_prefix(base).unwrap_or(Path::new(""));
        let mut dir = base.clone();
        let mut ancestors = vec![dir.clone()];
        for component in relative.components() {
            dir.push(component);
            ancestors.push(dir.clone());
        }
        for ancestor in ancestors {
            std::fs::create_dir_all(&ancestor).map_err(|error| Error::storage("create cgroup", &ancestor, &error))?;
            let control = ancestor.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&control).unwrap_or_default();
            for name in &wanted {
                if enabled.split_whitespace().any(|present| present == *name) {
                    continue;
                }
                std::fs::write(&control, format!("+{name}"))
                    .map_err(|error| Error::Engine(format!("failed to enable the {name} controller in {}: {error}", control.display())))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
35 24 0:30 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
37 35 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
38 35 0:33 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
39 35 0:34 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
40 35 0:35 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids";

    #[test]
    fn a_hybrid_host_uses_v1_for_what_v2_lacks() {
        let membership = "4:memory:/session/42\n2:cpuacct:/\n1:cpu:/\n8:pids:/\n0::/";
        let layout = CgroupLayout::from_mountinfo(HYBRID, membership, None, |_| "hugetlb".to_string());
        let found: Vec<_> = layout.hierarchies().map(|(controller, version, root)| (controller, version, root.to_path_buf())).collect();
        assert_eq!(found, vec![
            (Controller::Memory, Version::V1, PathBuf::from("/sys/fs/cgroup/memory/session/42")),
            (Controller::Cpu, Version::V1, PathBuf::from("/sys/fs/cgroup/cpu")),
            (Controller::CpuAccounting, Version::V1, PathBuf::from("/sys/fs/cgroup/cpuacct")),
            (Controller::Pids, Version::V1, PathBuf::from("/sys/fs/cgroup/pids")),
        ]);
    }

    #[test]
    fn a_pure_v2_host_uses_v2() {
        let mountinfo = "30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate";
        let layout = CgroupLayout::from_mountinfo(mountinfo, "0::/user.slice/app.scope", None, |_| "cpuset cpu io memory pids".to_string());
        assert!(layout.hierarchies().all(|(_, version, root)| version == Version::V2 && root == Path::new("/sys/fs/cgroup/user.slice")));
        assert_eq!(layout.hierarchies().count(), 5, "memory, cpu, cpu accounting, pids and the freezer");
    }

    #[test]
    fn a_delegated_group_holds_boxes_in_every_hierarchy() {
        let membership = "4:memory:/session/42\n2:cpuacct:/\n1:cpu:/\n8:pids:/\n0::/";
        let layout = CgroupLayout::from_mountinfo(HYBRID, membership, Some(Path::new("/boxlite-alice")), |_| "hugetlb".to_string());
        let roots: Vec<_> = layout.hierarchies().map(|(_, _, root)| root.to_path_buf()).collect();
        assert_eq!(roots, ["memory", "cpu", "cpuacct", "pids"].map(|name| PathBuf::from(format!("/sys/fs/cgroup/{name}/boxlite-alice"))));
    }

    #[test]
    fn a_hybrid_host_freezes_boxes_with_v1s_freezer() {
        let mountinfo = format!("{HYBRID}\n41 35 0:36 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer");
        let layout = CgroupLayout::from_mountinfo(&mountinfo, "9:freezer:/\n0::/", None, |_| String::new());
        let freezer = layout.hierarchies().find(|(controller, _, _)| *controller == Controller::Freezer);
        assert_eq!(freezer, Some((Controller::Freezer, Version::V1, Path::new("/sys/fs/cgroup/freezer"))));
        assert_eq!(layout.limiting_hierarchies().count(), 4);
    }

    #[test]
    fn a_host_without_cgroups_has_no_hierarchies() {
        assert_eq!(CgroupLayout::from_mountinfo("", "", None, |_| String::new()).hierarchies().count(), 0);
    }
}
