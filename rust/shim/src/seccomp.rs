//! The seccomp filter every box process runs under, in the spirit of Docker's default profile:
//! a deny list of syscalls that reach the host kernel's global state (modules, keyrings, mounts,
//! namespaces, clocks, tracing other processes, bpf, reboot), x32 syscalls refused, clone with
//! namespace flags refused, and clone3 reported as missing so libc falls back to clone (whose
//! flags the filter can see). Everything else is allowed.
//!
//! The init loads it on itself once the box is set up ([`load`]); every box process inherits
//! it.

/// Syscalls that fail with EPERM inside a box.
const DENIED: &[libc::c_long] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_init_module,
    libc::SYS_ioperm,
    libc::SYS_iopl,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_ptrace,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_uselib,
    libc::SYS_userfaultfd,
    libc::SYS_vhangup,
];

/// clone flags that would make new namespaces.
const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
/// Syscall numbers with this bit are the x32 ABI (x86_64 only; never valid elsewhere).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const LOAD_WORD: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JUMP_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JUMP_GREATER_EQUAL: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const AND: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RETURN: u16 = 0x06; // BPF_RET | BPF_K

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const ARG0_OFFSET: u32 = 16;

fn statement(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn errno(code: i32) -> libc::sock_filter {
    statement(RETURN, RET_ERRNO | (code as u32 & 0xffff))
}

pub fn compile() -> Vec<libc::sock_filter> {
    let mut program = vec![
        statement(LOAD_WORD, ARCH_OFFSET),
        jump(JUMP_EQUAL, AUDIT_ARCH, 1, 0),
        statement(RETURN, RET_KILL_PROCESS),
        statement(LOAD_WORD, NR_OFFSET),
        jump(JUMP_GREATER_EQUAL, X32_SYSCALL_BIT, 0, 1),
        errno(libc::EPERM),
    ];
    for number in DENIED {
        program.push(jump(JUMP_EQUAL, *number as u32, 0, 1));
        program.push(errno(libc::EPERM));
    }
    program.push(jump(JUMP_EQUAL, libc::SYS_clone3 as u32, 0, 1));
    program.push(errno(libc::ENOSYS));
    program.push(jump(JUMP_EQUAL, libc::SYS_clone as u32, 1, 0));
    program.push(statement(RETURN, RET_ALLOW));
    // clone: allowed only without namespace flags (x86_64 and arm64 both pass flags in arg 0).
    program.push(statement(LOAD_WORD, ARG0_OFFSET));
    program.push(statement(AND, CLONE_NAMESPACE_FLAGS));
    program.push(jump(JUMP_EQUAL, 0, 0, 1));
    program.push(statement(RETURN, RET_ALLOW));
    program.push(errno(libc::EPERM));
    program
}

/// Sets no_new_privs and installs `program` on the calling thread. Only async-signal-safe
/// calls: it runs in a freshly forked child.
pub fn load(program: &[libc::sock_filter]) -> bool {
    let filter = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
    // SAFETY: prctl and seccomp read `filter`, which points into `program`, alive for the call.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::syscall(libc::SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, 0, std::ptr::addr_of!(filter)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_fits_classic_bpf_and_ends_every_path() {
        let program = compile();
        assert!(program.len() < 4096);
        assert_eq!(program.last().map(|last| last.code), Some(RETURN));
        // Every deny rule is a compare that skips its own return when the number differs.
        let denies = program.iter().filter(|instruction| instruction.code == RETURN && instruction.k == RET_ERRNO | libc::EPERM as u32).count();
        assert_eq!(denies, DENIED.len() + 2);
    }
}
