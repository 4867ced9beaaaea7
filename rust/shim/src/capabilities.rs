//! The capability bounding set of box processes. The runtime sends the capabilities to keep
//! (`ShimConfig::capabilities`, by default `boxlite_protocol::DEFAULT_CAPABILITIES`); every
//! other one is removed before exec, so even root in the box cannot regain it.

/// Highest capability number the kernel knows, from /proc (read by the init, before forking).
pub fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|text| text.trim().parse().ok()).unwrap_or(40)
}

/// Drops every capability not in `kept` from the bounding set. Async-signal-safe.
pub fn drop_bounding_set(last: u32, kept: &[u32]) -> bool {
    (0..=last).filter(|capability| !kept.contains(capability)).all(|capability| {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(capability), 0, 0, 0) == 0 }
    })
}
