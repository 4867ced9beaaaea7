//! The capabilities a box process may hold: Docker's default set less MKNOD. Every other
//! capability is removed from the bounding set before exec, so even root in the box cannot
//! regain it. MKNOD goes because boxes have no device cgroup: a device node made in a box
//! would reach the host's disks.

/// Capability numbers (linux/capability.h) kept in the bounding set.
const KEPT: &[u32] = &[
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    29, // AUDIT_WRITE
    31, // SETFCAP
];

/// Highest capability number the kernel knows, from /proc (read by the init, before forking).
pub fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|text| text.trim().parse().ok()).unwrap_or(40)
}

/// Drops every capability not in [`KEPT`] from the bounding set. Async-signal-safe.
pub fn drop_bounding_set(last: u32) -> bool {
    (0..=last).filter(|capability| !KEPT.contains(capability)).all(|capability| {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(capability), 0, 0, 0) == 0 }
    })
}
