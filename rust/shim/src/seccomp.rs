//! The seccomp filter every box process runs under. It refuses at least what Docker's default
//! profile refuses a container with Docker's default capabilities (docs/security.md lists
//! each difference and why): a deny list of syscalls that reach the host kernel's global state
//! (modules, keyrings, mounts, namespaces, clocks, tracing other processes, bpf, io_uring,
//! NUMA policy, reboot, obsolete ones), other ABIs (32-bit: the process is killed; x32:
//! refused), clone with namespace flags refused, clone3 reported as missing so libc falls back
//! to clone (whose flags the filter can see), sockets of families that reach past the box's
//! network namespace (vsock) or widen the kernel's surface (AF_ALG), and `personality` beyond
//! the values Docker allows. Everything else is allowed.
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
    libc::SYS_fanotify_init,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_ioperm,
    libc::SYS_iopl,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_migrate_pages,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_name_to_handle_at,
    libc::SYS_nfsservctl,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pidfd_getfd,
    libc::SYS_pivot_root,
    libc::SYS_process_madvise,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_ptrace,
    libc::SYS_quotactl,
    SYS_QUOTACTL_FD,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_setdomainname,
    libc::SYS_sethostname,
    SYS_SET_MEMPOLICY_HOME_NODE,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS__sysctl,
    libc::SYS_sysfs,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_uselib,
    libc::SYS_userfaultfd,
    libc::SYS_ustat,
    libc::SYS_vhangup,
];

/// x86_64 numbers the libc crate does not name.
const SYS_QUOTACTL_FD: libc::c_long = 443;
const SYS_SET_MEMPOLICY_HOME_NODE: libc::c_long = 450;

/// Socket families refused: vsock reaches the host (and its other guests) past the network
/// namespace; AF_ALG exposes the kernel's crypto code. Refused as a kernel without them would.
const REFUSED_SOCKET_FAMILIES: &[u32] = &[libc::AF_VSOCK as u32, libc::AF_ALG as u32];

/// `personality` values allowed (Docker's list): Linux, UNAME26, their 32-bit-address forms,
/// and the query.
const ALLOWED_PERSONALITIES: &[u32] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// clone flags that would make new namespaces.
const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// `AUDIT_ARCH_X86_64`: the only architecture boxlite builds for (lib.rs refuses others, since
/// this filter names x86_64's system calls).
const AUDIT_ARCH: u32 = 0xC000_003E;
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

/// What the filter answers for one syscall number (every number not named is allowed).
#[derive(Clone, Copy)]
enum Rule {
    Deny,
    /// `clone3`: as if the kernel had none.
    Missing,
    /// `socket`: refused for [`REFUSED_SOCKET_FAMILIES`].
    SocketFamily,
    /// `personality`: only [`ALLOWED_PERSONALITIES`].
    Personality,
    /// `clone`: only without [`CLONE_NAMESPACE_FLAGS`].
    CloneFlags,
}

/// The syscalls the filter names, in ascending order of number.
fn rules() -> Vec<(u32, Rule)> {
    let mut rules: Vec<(u32, Rule)> = DENIED.iter().map(|number| (*number as u32, Rule::Deny)).collect();
    rules.extend([
        (libc::SYS_clone3 as u32, Rule::Missing),
        (libc::SYS_socket as u32, Rule::SocketFamily),
        (libc::SYS_personality as u32, Rule::Personality),
        (libc::SYS_clone as u32, Rule::CloneFlags),
    ]);
    rules.sort_unstable_by_key(|(number, _)| *number);
    rules
}

/// The most rules a leaf of the search compares one after another.
const LEAF_RULES: usize = 4;

/// The filter. After the architecture and ABI checks, the syscall number is found by a binary
/// search over the named numbers (`nr >= pivot` at each step) down to a few compares: a
/// syscall walks about ten instructions, not one compare per rule, and the kernel's cache of
/// constant answers, which runs the filter for every syscall number at each load, does as
/// little work.
pub fn compile() -> Vec<libc::sock_filter> {
    let mut program = vec![
        statement(LOAD_WORD, ARCH_OFFSET),
        jump(JUMP_EQUAL, AUDIT_ARCH, 1, 0),
        statement(RETURN, RET_KILL_PROCESS),
        statement(LOAD_WORD, NR_OFFSET),
        jump(JUMP_GREATER_EQUAL, X32_SYSCALL_BIT, 0, 1),
        errno(libc::EPERM),
    ];
    program.extend(search(&rules()));
    program
}

/// The part of the program that answers for the numbers in `rules` (the accumulator holding
/// the syscall number), allowing every other number it is given.
fn search(rules: &[(u32, Rule)]) -> Vec<libc::sock_filter> {
    if rules.len() <= LEAF_RULES {
        let mut leaf = Vec::new();
        for (number, rule) in rules {
            let answer = answer(*rule);
            leaf.push(jump(JUMP_EQUAL, *number, 0, offset(answer.len())));
            leaf.extend(answer);
        }
        leaf.push(statement(RETURN, RET_ALLOW));
        return leaf;
    }
    let (below, from) = rules.split_at(rules.len() / 2);
    let (lower, upper) = (search(below), search(from));
    let mut node = vec![jump(JUMP_GREATER_EQUAL, from[0].0, offset(lower.len()), 0)];
    node.extend(lower);
    node.extend(upper);
    node
}

/// A forward jump over `instructions`; classic BPF's offsets are a byte (the test checks the
/// program keeps to it).
fn offset(instructions: usize) -> u8 {
    u8::try_from(instructions).expect("a filter jump spans at most 255 instructions")
}

/// The instructions that answer for a syscall under `rule`; each path ends in a return, so the
/// accumulator holding an argument is never taken for a syscall number again.
fn answer(rule: Rule) -> Vec<libc::sock_filter> {
    match rule {
        Rule::Deny => vec![errno(libc::EPERM)],
        Rule::Missing => vec![errno(libc::ENOSYS)],
        Rule::SocketFamily => argument_in(REFUSED_SOCKET_FAMILIES, errno(libc::EAFNOSUPPORT), statement(RETURN, RET_ALLOW)),
        Rule::Personality => argument_in(ALLOWED_PERSONALITIES, statement(RETURN, RET_ALLOW), errno(libc::EPERM)),
        // x86_64 and arm64 both pass clone's flags in argument 0.
        Rule::CloneFlags => vec![
            statement(LOAD_WORD, ARG0_OFFSET),
            statement(AND, CLONE_NAMESPACE_FLAGS),
            jump(JUMP_EQUAL, 0, 0, 1),
            statement(RETURN, RET_ALLOW),
            errno(libc::EPERM),
        ],
    }
}

/// `matched` when the first argument is one of `values`, `otherwise` when not.
fn argument_in(values: &[u32], matched: libc::sock_filter, otherwise: libc::sock_filter) -> Vec<libc::sock_filter> {
    let count = values.len();
    let mut block = vec![statement(LOAD_WORD, ARG0_OFFSET)];
    for (index, value) in values.iter().enumerate() {
        // From compare `index`, `matched` is the instructions left before it, plus one.
        block.push(jump(JUMP_EQUAL, *value, offset(count - index), 0));
    }
    block.push(otherwise);
    block.push(matched);
    block
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
        // Every jump lands inside the program.
        for (at, instruction) in program.iter().enumerate() {
            if instruction.code == JUMP_EQUAL || instruction.code == JUMP_GREATER_EQUAL {
                assert!(at + 1 + usize::from(instruction.jt.max(instruction.jf)) < program.len(), "jump at {at}");
            }
        }
    }

    /// What the filter should answer, rule by rule, written plainly.
    fn expected(number: u32, argument: u32) -> u32 {
        let eperm = RET_ERRNO | libc::EPERM as u32;
        if number >= X32_SYSCALL_BIT || DENIED.iter().any(|denied| *denied as u32 == number) {
            return eperm;
        }
        match libc::c_long::from(number) {
            libc::SYS_clone3 => RET_ERRNO | libc::ENOSYS as u32,
            libc::SYS_socket if REFUSED_SOCKET_FAMILIES.contains(&argument) => RET_ERRNO | libc::EAFNOSUPPORT as u32,
            libc::SYS_personality if !ALLOWED_PERSONALITIES.contains(&argument) => eperm,
            libc::SYS_clone if argument & CLONE_NAMESPACE_FLAGS != 0 => eperm,
            _ => RET_ALLOW,
        }
    }

    #[test]
    fn every_syscall_number_gets_its_rule() {
        let program = compile();
        let arguments = [0, libc::SIGCHLD as u32, libc::CLONE_NEWNET as u32, libc::AF_VSOCK as u32, libc::AF_ALG as u32, libc::AF_INET as u32, 0x8, 0x40_0000, 0xffff_ffff];
        let mut longest = 0;
        for number in (0..1024).chain([X32_SYSCALL_BIT, X32_SYSCALL_BIT | 39, u32::MAX]) {
            for argument in arguments {
                let (answer, steps) = run_counting(&program, AUDIT_ARCH, number, argument);
                assert_eq!(answer, expected(number, argument), "syscall {number}, argument {argument:#x}");
                longest = longest.max(steps);
            }
        }
        assert!(longest <= 24, "a syscall walks {longest} instructions");
    }

    /// What the program answers for one syscall: a classic BPF interpreter of the few
    /// instructions `compile` uses.
    fn run(program: &[libc::sock_filter], arch: u32, number: u32, argument: u32) -> u32 {
        run_counting(program, arch, number, argument).0
    }

    /// [`run`], with the number of instructions the answer took.
    fn run_counting(program: &[libc::sock_filter], arch: u32, number: u32, argument: u32) -> (u32, usize) {
        let (mut accumulator, mut at, mut steps) = (0u32, 0usize, 0usize);
        loop {
            let instruction = program[at];
            at += 1;
            steps += 1;
            match instruction.code {
                LOAD_WORD => {
                    accumulator = match instruction.k {
                        NR_OFFSET => number,
                        ARCH_OFFSET => arch,
                        ARG0_OFFSET => argument,
                        other => panic!("load of offset {other}"),
                    }
                }
                AND => accumulator &= instruction.k,
                JUMP_EQUAL | JUMP_GREATER_EQUAL => {
                    let taken = if instruction.code == JUMP_EQUAL { accumulator == instruction.k } else { accumulator >= instruction.k };
                    at += usize::from(if taken { instruction.jt } else { instruction.jf });
                }
                RETURN => return (instruction.k, steps),
                other => panic!("instruction {other:#x}"),
            }
        }
    }

    #[test]
    fn each_rule_answers_as_documented() {
        let program = compile();
        let answer = |number: libc::c_long, argument: u32| run(&program, AUDIT_ARCH, number as u32, argument);
        let eperm = RET_ERRNO | libc::EPERM as u32;
        assert_eq!(answer(libc::SYS_getpid, 0), RET_ALLOW);
        assert_eq!(answer(libc::SYS_io_uring_setup, 0), eperm);
        assert_eq!(answer(SYS_QUOTACTL_FD, 0), eperm);
        assert_eq!(answer(libc::SYS_clone3, 0), RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(answer(libc::SYS_clone, libc::SIGCHLD as u32), RET_ALLOW);
        assert_eq!(answer(libc::SYS_clone, libc::CLONE_NEWNET as u32), eperm);
        assert_eq!(answer(libc::SYS_socket, libc::AF_INET as u32), RET_ALLOW);
        assert_eq!(answer(libc::SYS_socket, libc::AF_UNIX as u32), RET_ALLOW);
        for family in [libc::AF_VSOCK, libc::AF_ALG] {
            assert_eq!(answer(libc::SYS_socket, family as u32), RET_ERRNO | libc::EAFNOSUPPORT as u32);
        }
        for allowed in ALLOWED_PERSONALITIES {
            assert_eq!(answer(libc::SYS_personality, *allowed), RET_ALLOW);
        }
        assert_eq!(answer(libc::SYS_personality, 0x40_0000), eperm); // READ_IMPLIES_EXEC
        assert_eq!(run(&program, AUDIT_ARCH, X32_SYSCALL_BIT | libc::SYS_getpid as u32, 0), eperm);
        assert_eq!(run(&program, 0x4000_0003, 20, 0), RET_KILL_PROCESS); // i386
    }
}
