//! The box's interface, made ahead of need in the box's network namespace while the shim is
//! still host root there (`boxlite_protocol::network` says what it is and why it leads
//! nowhere): a persistent tun device with the box's address and a default route. The runtime
//! loads the rules that divert what leaves it. A box without a network gets a shim made without
//! it, and has loopback only.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use boxlite_protocol::network::{ADDRESS, GATEWAY, INTERFACE, PREFIX_LENGTH};

use crate::sys::{check, Result, SysError};

/// Makes the interface. Loopback comes up first: the runtime listens on it as soon as the shim
/// reports.
pub fn prepare_interface() -> Result<()> {
    crate::jail::bring_up_loopback()?;
    make_tun()?;
    // SAFETY: a datagram socket only carries the ioctls below; owned at once.
    let socket = unsafe { OwnedFd::from_raw_fd(check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0), || "failed to open a socket to configure eth0".to_string())?) };
    let netmask = u32::MAX.checked_shl(32 - PREFIX_LENGTH).unwrap_or(0).to_be_bytes();
    for (request, address, what) in [(libc::SIOCSIFADDR, ADDRESS, "address"), (libc::SIOCSIFNETMASK, netmask, "netmask")] {
        let mut interface = interface_request();
        // SAFETY: a sockaddr_in fits the ifreq's address union, which is a sockaddr.
        unsafe { std::ptr::write(std::ptr::addr_of_mut!(interface.ifr_ifru.ifru_addr).cast(), socket_address(address)) };
        // SAFETY: the ioctl reads the ifreq, which lives through the call.
        check(unsafe { libc::ioctl(socket.as_raw_fd(), request, &interface) }, || format!("failed to set {INTERFACE}'s {what}"))?;
    }
    let mut interface = interface_request();
    // SAFETY: as above; SIOCGIFFLAGS writes the flags into the ifreq.
    unsafe {
        check(libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut interface), || format!("failed to read {INTERFACE}'s flags"))?;
        interface.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &interface), || format!("failed to bring {INTERFACE} up"))?;
    }
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (slot, byte) in name.iter_mut().zip(INTERFACE.as_bytes()) {
        *slot = *byte as libc::c_char;
    }
    let mut route = RouteEntry::default_route(GATEWAY, name.as_mut_ptr());
    // SAFETY: SIOCADDRT reads the route entry and the interface name it points to, both alive
    // through the call.
    check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCADDRT, &mut route) }, || format!("failed to add the default route through {INTERFACE}"))?;
    // Box root holds no capability over this namespace (the host's user namespace owns it), so
    // without this no box process could listen on a port below 1024.
    std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")
        .map_err(|source| SysError { operation: "failed to let box processes listen on any port".to_string(), source })
}

/// Creates the tun device and makes it outlive its descriptor.
fn make_tun() -> Result<()> {
    let path = c"/dev/net/tun";
    // SAFETY: open of a constant path; the descriptor is owned at once.
    let tun = unsafe { OwnedFd::from_raw_fd(check(libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC), || "failed to open /dev/net/tun".to_string())?) };
    let mut interface = interface_request();
    interface.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads the ifreq, alive through the call; TUNSETPERSIST takes an integer.
    unsafe {
        check(libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &interface), || format!("failed to make the tun device {INTERFACE}"))?;
        check(libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong), || format!("failed to make {INTERFACE} persist"))?;
    }
    Ok(())
}

fn interface_request() -> libc::ifreq {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(INTERFACE.as_bytes()) {
        *slot = *byte as libc::c_char;
    }
    request
}

fn socket_address(address: [u8; 4]) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(address) },
        sin_zero: [0; 8],
    }
}

/// `struct rtentry` of <net/route.h> (the libc crate has it only for musl and uclibc).
#[repr(C)]
struct RouteEntry {
    pad1: libc::c_ulong,
    destination: libc::sockaddr_in,
    gateway: libc::sockaddr_in,
    genmask: libc::sockaddr_in,
    flags: libc::c_ushort,
    pad2: libc::c_short,
    pad3: libc::c_ulong,
    pad4: *mut libc::c_void,
    metric: libc::c_short,
    device: *mut libc::c_char,
    mtu: libc::c_ulong,
    window: libc::c_ulong,
    irtt: libc::c_ushort,
}

impl RouteEntry {
    fn default_route(gateway: [u8; 4], device: *mut libc::c_char) -> Self {
        Self {
            pad1: 0,
            destination: socket_address([0; 4]),
            gateway: socket_address(gateway),
            genmask: socket_address([0; 4]),
            flags: libc::RTF_UP | libc::RTF_GATEWAY,
            pad2: 0,
            pad3: 0,
            pad4: std::ptr::null_mut(),
            metric: 0,
            device,
            mtu: 0,
            window: 0,
            irtt: 0,
        }
    }
}
