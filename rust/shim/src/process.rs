//! Starting a box process: a child made with vfork semantics (`clone(CLONE_VM | CLONE_VFORK)`,
//! or a plain fork where `fs.suid_dumpable` is set) sets up its stdio, identity and limits,
//! then execs. The init is single-threaded and waits meanwhile, so the child may use the init's
//! memory; it allocates only to report a failure.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use boxlite_protocol::{ShimConfig, TtySize};

use crate::sys::{self, check};
use crate::users::Identity;

pub fn pipe() -> sys::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors, owned from here on.
    unsafe {
        check(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), || "failed to create a pipe".to_string())?;
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Puts /dev/null on `target` (0, 1 or 2) in place of what was there, which is closed.
pub fn redirect_to_null(target: RawFd) {
    // SAFETY: opening /dev/null and dup2 onto `target`; the temporary descriptor is closed.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, target);
            libc::close(null);
        }
    }
}

/// What the child is given instead of inherited stdio.
pub enum Stdio {
    Pipes([OwnedFd; 3]),
    Terminal { slave: OwnedFd },
}

/// A pseudo-terminal from the box's own devpts: (master, slave).
pub fn open_pty(size: &TtySize) -> sys::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: standard ptmx sequence; each descriptor is wrapped in an OwnedFd at once, and the
    // ioctl arguments point at locals of the right type.
    unsafe {
        let master_fd = check(libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC), || {
            "failed to open /dev/ptmx".to_string()
        })?;
        let master = OwnedFd::from_raw_fd(master_fd);
        let unlock: libc::c_int = 0;
        check(libc::ioctl(master_fd, libc::TIOCSPTLCK, &unlock), || "failed to unlock the pty".to_string())?;
        let mut number: libc::c_uint = 0;
        check(libc::ioctl(master_fd, libc::TIOCGPTN, &mut number), || "failed to name the pty".to_string())?;
        let path = format!("/dev/pts/{number}");
        let slave_fd = check(libc::open(sys::cstring(&path).as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC), || {
            format!("failed to open {path}")
        })?;
        let slave = OwnedFd::from_raw_fd(slave_fd);
        set_window_size(master.as_raw_fd(), size)?;
        Ok((master, slave))
    }
}

pub fn set_window_size(fd: RawFd, size: &TtySize) -> sys::Result<()> {
    let window = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &window) }, || "failed to set the terminal size".to_string())?;
    Ok(())
}

/// What confines every box process. The capability bounding set, no_new_privs and the seccomp
/// filter are set once on the init ([`Confinement::apply_to_init`]), which every box process
/// inherits them from; resource limits are set in each child.
pub struct Confinement {
    /// (resource, limit) pairs for setrlimit.
    pub rlimits: Vec<(libc::__rlimit_resource_t, libc::rlim_t)>,
    /// Whether children may share the init's memory until they exec. Not when
    /// `fs.suid_dumpable` is set: a child's setuid would make that memory dumpable, and so
    /// writable through /proc by box processes of the same uid, until its exec.
    pub share_memory: bool,
    /// Whether the init is shielded from the OOM killer (a negative score adjustment, which
    /// children inherit and must not keep).
    pub init_shielded: bool,
    /// Whether box processes take the supplementary groups of their user. The boxes of an
    /// ordinary user without subordinate ids may not (their one id: the runtime's namespace denies
    /// setgroups, as a one-id group map requires), and keep that user's.
    pub sets_groups: bool,
}

impl Confinement {
    pub fn new(config: &ShimConfig) -> Self {
        let limits = &config.process_limits;
        let rlimits = [
            (libc::RLIMIT_NOFILE, limits.open_files),
            (libc::RLIMIT_FSIZE, limits.file_size_bytes),
            (libc::RLIMIT_CPU, limits.cpu_time_secs),
            (libc::RLIMIT_AS, limits.address_space_bytes),
        ]
        .into_iter()
        .filter_map(|(resource, limit)| Some((resource, limit?)))
        .collect();
        let suid_dumpable = std::fs::read_to_string("/proc/sys/fs/suid_dumpable").unwrap_or_default();
        // Unknown counts as shielded: children then reset their score, which is always safe.
        let score_adjustment = std::fs::read_to_string("/proc/self/oom_score_adj").ok().and_then(|text| text.trim().parse::<i32>().ok());
        Self { rlimits, share_memory: suid_dumpable.trim() == "0", init_shielded: score_adjustment.is_none_or(|score| score < 0), sets_groups: config.user_namespace.is_none_or(|map| map.size > 1) }
    }

    /// Confines the init itself once its setup is done: it keeps its own capabilities (it never
    /// execs), but what it starts can only hold the capabilities of `config`, gains no
    /// privilege at exec, and runs under the seccomp filter. The init needs none of the
    /// syscalls the filter refuses from here on.
    pub fn apply_to_init(config: &ShimConfig, filter: &[libc::sock_filter]) -> Result<(), String> {
        if !crate::capabilities::drop_bounding_set(crate::capabilities::last_capability(), &config.capabilities) {
            return Err(format!("failed to drop capabilities: {}", std::io::Error::last_os_error()));
        }
        if !crate::seccomp::load(filter) {
            return Err(format!("failed to install the seccomp filter: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// The stack a starting child runs on. Made once: the init starts one child at a time.
pub struct ChildStack(Vec<u8>);

impl ChildStack {
    pub fn new() -> Self {
        Self(vec![0; CHILD_STACK])
    }
}

pub struct Launch<'a> {
    pub confinement: &'a Confinement,
    pub argv: &'a [String],
    pub env: Vec<String>,
    pub cwd: Option<&'a str>,
    pub identity: &'a Identity,
    /// Kept by the caller, which closes its copies once it has answered.
    pub stdio: &'a Stdio,
}

/// Why a launch failed: the message, and whether the program was not found.
pub struct LaunchError {
    pub message: String,
    pub not_found: bool,
}

fn to_cstrings(values: &[String]) -> Vec<CString> {
    values.iter().map(sys::cstring).collect()
}

/// Candidate paths for argv[0], searched along the PATH of the process's environment.
fn candidates(program: &str, env: &[String]) -> Vec<String> {
    if program.contains('/') {
        return vec![program.to_string()];
    }
    let path = env
        .iter()
        .find_map(|entry| entry.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':').filter(|dir| !dir.is_empty()).map(|dir| format!("{dir}/{program}")).collect()
}

/// A command's C strings and the pointer arrays execve takes, made before the process that
/// runs it exists: that process may not allocate (it shares the init's memory).
struct Program {
    paths: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    env: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    /// Owners of the strings `argv` and `env` point into.
    _strings: (Vec<CString>, Vec<CString>),
}

impl Program {
    fn new(launch: &Launch<'_>) -> Result<Self, LaunchError> {
        let Some(program) = launch.argv.first() else {
            return Err(LaunchError { message: "empty command".to_string(), not_found: false });
        };
        let paths = candidates(program, &launch.env).iter().map(sys::cstring).collect();
        let (argv, env) = (to_cstrings(launch.argv), to_cstrings(&launch.env));
        let pointers = |strings: &[CString]| strings.iter().map(|value| value.as_ptr()).chain([std::ptr::null()]).collect();
        Ok(Self { paths, argv: pointers(&argv), env: pointers(&env), cwd: launch.cwd.map(sys::cstring), _strings: (argv, env) })
    }
}

/// Forks and execs; returns the child's pid once exec succeeded, or why it failed. The child
/// leads its own session and process group, so the whole group can be signalled.
pub fn launch(launch: Launch<'_>, stack: &mut ChildStack) -> Result<i32, LaunchError> {
    let program = Program::new(&launch)?;
    let (report_read, report_write) = pipe().map_err(|error| LaunchError { message: error.to_string(), not_found: false })?;

    // Out of `stack` while the child uses it, which `plan` lends to the child whole.
    let mut child_stack = std::mem::take(&mut stack.0);
    let plan = ChildPlan { launch: &launch, program: &program, report: report_write.as_raw_fd() };
    // SAFETY: the child runs `start_child` on `child_stack`, either in our memory (CLONE_VM)
    // while this thread is suspended (CLONE_VFORK) until it execs or exits, or in a copy of it
    // (a plain fork, `share_memory` off); either way `plan`, the data it points at and the stack
    // outlive its use of them, and nothing else touches them meanwhile (the init is
    // single-threaded). The stack grows down from its (16-byte aligned) end.
    let pid = unsafe {
        let top = child_stack.as_mut_ptr().add(child_stack.len());
        let sharing = if launch.confinement.share_memory { libc::CLONE_VM | libc::CLONE_VFORK } else { 0 };
        libc::clone(start_child, top.cast(), sharing | libc::SIGCHLD, std::ptr::addr_of!(plan).cast_mut().cast())
    };
    stack.0 = child_stack;
    // Whatever the child's credentials did to the memory it shared, the init stays undumpable.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if pid < 0 {
        return Err(LaunchError { message: format!("failed to start a process: {}", std::io::Error::last_os_error()), not_found: false });
    }
    drop(report_write);
    match read_report(&report_read) {
        None => Ok(pid),
        Some(failure) => {
            let mut status = 0;
            // SAFETY: reap the child that failed before exec.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            Err(failure)
        }
    }
}

/// What a starting process wrote on its report descriptor before its exec closed it: nothing
/// when the exec succeeded.
pub fn read_report(report: &OwnedFd) -> Option<LaunchError> {
    let mut buffer = [0u8; libc::PIPE_BUF];
    // SAFETY: reads at most the buffer's length into it. It returns once the child wrote its
    // failure (one write, shorter than a pipe's atomic size) or its exec closed the descriptor.
    let count = unsafe { libc::read(report.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
    let written = usize::try_from(count).ok().filter(|count| *count > 0)?;
    let message = String::from_utf8_lossy(&buffer[..written]).into_owned();
    let not_found = message.starts_with("not found");
    Some(LaunchError { message, not_found })
}

/// Becomes the process `launch` describes, in place: what a child of [`launch`] does, for the
/// box's pid 1 (`pid1`). A failure is written to `report` (close-on-exec) before exiting.
pub fn exec_in_place(launch: &Launch<'_>, report: RawFd) -> ! {
    match Program::new(launch) {
        // SAFETY: `child` never returns; `launch` and `program` live on this frame meanwhile.
        Ok(program) => unsafe { child(launch, &program, report) },
        Err(error) => {
            // SAFETY: writing a local buffer to the report descriptor, then leaving.
            unsafe {
                libc::write(report, error.message.as_ptr().cast(), error.message.len());
                libc::_exit(127)
            }
        }
    }
}

/// Stack of a starting child: it only sets itself up and execs, but formats its error on failure.
const CHILD_STACK: usize = 256 * 1024;

/// What a starting child needs, prepared by [`launch`] before the child exists.
struct ChildPlan<'a> {
    launch: &'a Launch<'a>,
    program: &'a Program,
    report: RawFd,
}

/// The child's entry point: vfork semantics (shared memory, parent suspended) make starting a
/// process cheaper than fork, which copies the init's page tables.
extern "C" fn start_child(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `plan` is the ChildPlan that `launch` keeps alive until this child execs or exits.
    let plan = unsafe { &*plan.cast::<ChildPlan<'_>>() };
    // SAFETY: see `child`; it never returns.
    unsafe { child(plan.launch, plan.program, plan.report) }
}

/// The child side of [`launch`]: set up stdio, identity and cwd, then exec. On failure the
/// reason goes to `report` (close-on-exec, so a successful exec closes it with nothing written).
unsafe fn child(launch: &Launch<'_>, program: &Program, report: RawFd) -> ! {
    let fail = |message: &str| -> ! {
        let text = format!("{message}: {}", std::io::Error::last_os_error());
        // SAFETY: writing a local buffer to our report pipe, then leaving without unwinding.
        unsafe {
            libc::write(report, text.as_ptr().cast(), text.len());
            libc::_exit(127)
        }
    };
    // SAFETY: every call below acts on this child only; pointers are to data owned by the
    // caller's frame, which stays alive because this function never returns.
    unsafe {
        // The init's dispositions are all default; only its mask is not (init.rs).
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if libc::setsid() < 0 {
            fail("failed to start a session");
        }
        match launch.stdio {
            Stdio::Pipes(fds) => {
                // A source that is itself fd 0, 1 or 2 is first moved above 2: it would otherwise
                // be overwritten, or kept with its close-on-exec flag.
                let mut moved = [fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()];
                if moved.iter().any(|fd| *fd <= 2) {
                    for slot in &mut moved {
                        *slot = libc::fcntl(*slot, libc::F_DUPFD_CLOEXEC, 3);
                        if *slot < 0 {
                            fail("failed to set up stdio");
                        }
                    }
                }
                for (target, fd) in moved.iter().enumerate() {
                    if libc::dup2(*fd, target as RawFd) < 0 {
                        fail("failed to set up stdio");
                    }
                }
            }
            Stdio::Terminal { slave } => {
                if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) < 0 {
                    fail("failed to attach the terminal");
                }
                for target in 0..3 {
                    if libc::dup2(slave.as_raw_fd(), target) < 0 {
                        fail("failed to set up the terminal");
                    }
                }
            }
        }
        if launch.confinement.init_shielded {
            // The init's shield from the OOM killer is not its processes'.
            let adjust = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if adjust >= 0 {
                libc::write(adjust, b"0".as_ptr().cast(), 1);
                libc::close(adjust);
            }
        }
        for (resource, limit) in &launch.confinement.rlimits {
            let value = libc::rlimit { rlim_cur: *limit, rlim_max: *limit };
            if libc::setrlimit(*resource, &value) < 0 {
                fail("failed to set a resource limit");
            }
        }
        // Raw syscalls: this child shares the init's memory, and libc's wrappers would consult
        // its thread bookkeeping.
        let identity = launch.identity;
        if launch.confinement.sets_groups && libc::syscall(libc::SYS_setgroups, identity.groups.len(), identity.groups.as_ptr()) < 0 {
            fail("failed to set supplementary groups");
        }
        if libc::syscall(libc::SYS_setgid, identity.gid) < 0 {
            fail(&format!("failed to set gid {}", identity.gid));
        }
        if libc::syscall(libc::SYS_setuid, identity.uid) < 0 {
            fail(&format!("failed to set uid {}", identity.uid));
        }
        if let Some(dir) = &program.cwd {
            if libc::chdir(dir.as_ptr()) < 0 {
                fail(&format!("failed to enter working directory {}", dir.to_string_lossy()));
            }
        }
        let mut last_errno = libc::ENOENT;
        for path in &program.paths {
            libc::execve(path.as_ptr(), program.argv.as_ptr(), program.env.as_ptr());
            let errno = *libc::__errno_location();
            // Keep the most telling error: a file that exists but cannot run beats "not found".
            if errno != libc::ENOENT && errno != libc::ENOTDIR {
                last_errno = errno;
            }
        }
        *libc::__errno_location() = last_errno;
        let program = launch.argv.first().map_or("", String::as_str);
        if last_errno == libc::ENOENT {
            fail(&format!("not found: {program}"));
        }
        fail(&format!("failed to execute {program}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_searched_along_path() {
        let env = vec!["PATH=/a:/b".to_string()];
        assert_eq!(candidates("sh", &env), vec!["/a/sh", "/b/sh"]);
        assert_eq!(candidates("./run", &env), vec!["./run"]);
        assert_eq!(candidates("sh", &[]).first().map(String::as_str), Some("/usr/local/sbin/sh"));
    }
}
