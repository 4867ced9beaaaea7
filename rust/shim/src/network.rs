//! The box's interface, made ahead of need in the box's network namespace while the shim is
//! still root there (`boxlite_protocol::network` says what it is): a tun device, whose packets
//! only the runtime reads, with the box's address and a default route, and the listener the
//! runtime serves the box's connections on; `nftables` loads the rules that divert what leaves
//! the box. A box without a network gets a shim made without it, and has loopback only.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use boxlite_protocol::network::{ADDRESS, GATEWAY, INTERFACE, MTU, PREFIX_LENGTH, PROXY_PORT};

use crate::sys::{check, Result, SysError};

/// Makes the interface, and returns its tun device's descriptor. Loopback comes up first: the
/// runtime listens on it as soon as the shim reports.
pub fn prepare_interface() -> Result<OwnedFd> {
    crate::jail::bring_up_loopback()?;
    let proc = own_proc().ok();
    // The interface carries IPv4 only: without IPv6 the kernel gives it no link-local address to
    // check and sends no router solicitations out of it. Loopback, made with the namespace,
    // keeps ::1. (A host without IPv6 has no such setting, and nothing to turn off.)
    let _ = set(proc.as_ref(), "sys/net/ipv6/conf/default/disable_ipv6", "1");
    let interface = make_interface()?;
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
    let mut request = interface_request();
    request.ifr_ifru.ifru_mtu = MTU as libc::c_int;
    // SAFETY: as above; SIOCSIFMTU reads the ifreq, SIOCGIFFLAGS writes the flags into it.
    unsafe {
        check(libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFMTU, &request), || format!("failed to set {INTERFACE}'s MTU"))?;
        check(libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request), || format!("failed to read {INTERFACE}'s flags"))?;
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request), || format!("failed to bring {INTERFACE} up"))?;
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
    set(proc.as_ref(), "sys/net/ipv4/ip_unprivileged_port_start", "0").map_err(|source| SysError { operation: "failed to let box processes listen on any port".to_string(), source })?;
    Ok(interface)
}

/// Writes `value` to the setting at `path` under /proc: through `proc` ([`own_proc`]) where this
/// process has one, else through the host's.
fn set(proc: Option<&OwnedFd>, path: &str, value: &str) -> std::io::Result<()> {
    proc.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::Unsupported))
        .and_then(|proc| write_at(proc.as_fd(), path, value))
        .or_else(|_| std::fs::write(format!("/proc/{path}"), value))
}

/// A procfs instance of this process's own, mounted nowhere: what is looked up in it is looked
/// up in its own dentry cache. In the host's /proc, the entries of every network namespace under
/// `/proc/sys/net` share one hash chain per name, so a lookup there walks one entry per box
/// running (a tenth of the host's CPU time while boxes start, past 3,000 boxes). Only where this
/// process may mount a procfs (as root; a runtime that runs as an ordinary user may not, for the
/// host's pid namespace).
fn own_proc() -> std::io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    let owned = |fd: libc::c_long| {
        // SAFETY: a descriptor a system call just returned is owned from here on.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }).ok_or_else(std::io::Error::last_os_error)
    };
    // SAFETY: fsopen, fsconfig and fsmount with a constant file system name and integer
    // arguments; each returned descriptor is owned at once.
    unsafe {
        let context = owned(libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), FSOPEN_CLOEXEC))?;
        if libc::syscall(libc::SYS_fsconfig, context.as_raw_fd(), FSCONFIG_CMD_CREATE, std::ptr::null::<libc::c_char>(), std::ptr::null::<libc::c_void>(), 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        owned(libc::syscall(libc::SYS_fsmount, context.as_raw_fd(), FSMOUNT_CLOEXEC, 0))
    }
}

/// Writes `value` to the file `path` names under `dir`.
fn write_at(dir: BorrowedFd<'_>, path: &str, value: &str) -> std::io::Result<()> {
    let path = std::ffi::CString::new(path).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: openat on a valid directory descriptor and C string; the descriptor is owned at once.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: see above.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::io::Write::write_all(&mut &file, value.as_bytes())
}

/// What the runtime serves a box's way out on: the listener its connections are diverted to,
/// made before any box process could take its port, and its interface. The init keeps both
/// for as long as the box runs and hands a duplicate of each to every runtime that serves it
/// (`boxlite_protocol::Request::Network`), so a connection the box makes while one runtime
/// hands it over to the next waits in the listener's queue for the next one.
pub struct BoxSockets {
    proxy: OwnedFd,
    interface: OwnedFd,
}

impl BoxSockets {
    pub fn new(interface: OwnedFd) -> Result<Self> {
        let proxy = socket(libc::SOCK_STREAM)?;
        let what = || format!("failed to listen on 127.0.0.1:{PROXY_PORT} in the box");
        let mut address = socket_address([127, 0, 0, 1]);
        address.sin_port = PROXY_PORT.to_be();
        // SAFETY: bind reads a sockaddr_in that lives through the call; listen takes integers.
        unsafe {
            check(libc::bind(proxy.as_raw_fd(), std::ptr::addr_of!(address).cast(), std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t), what)?;
            check(libc::listen(proxy.as_raw_fd(), libc::SOMAXCONN), what)?;
        }
        Ok(Self { proxy, interface })
    }

    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Self { proxy: self.proxy.try_clone()?, interface: self.interface.try_clone()? })
    }

    /// Both, the listener first, as they travel: on the start-up socket after
    /// `boxlite_protocol::BOX_SOCKETS`, and with the init's answer to `Request::Network`.
    pub fn descriptors(&self) -> [BorrowedFd<'_>; 2] {
        [self.proxy.as_fd(), self.interface.as_fd()]
    }
}

/// A new non-blocking IPv4 socket of `kind` in this process's network namespace.
pub fn socket(kind: libc::c_int) -> Result<OwnedFd> {
    // SAFETY: socket returns a new descriptor, owned at once.
    Ok(unsafe { OwnedFd::from_raw_fd(check(libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0), || "failed to make a socket in the box".to_string())?) })
}

/// Makes the interface: a tun device, which the runtime reads the box's datagrams from (the
/// descriptor returned). It persists: it goes with the namespace, in the kernel's batched
/// cleanup of namespaces, not when the last of its descriptors closes, where removing it alone
/// held whoever closed it (the runtime, or the init as the box stops) for 10 ms; that close
/// still waits out one RCU grace period, under the kernel's network lock. A hundred boxes'
/// bridges removed at once held the next hundred boxes' starts up by a second or more.
fn make_interface() -> Result<OwnedFd> {
    let path = c"/dev/net/tun";
    // SAFETY: open of a constant path; the descriptor is owned at once.
    let tun = unsafe { OwnedFd::from_raw_fd(check(libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK), || "failed to make the box's interface: /dev/net/tun cannot be opened (the kernel's tun module)".to_string())?) };
    let mut interface = interface_request();
    interface.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads the ifreq, alive through the call; TUNSETPERSIST takes an integer.
    unsafe {
        check(libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &interface), || format!("failed to make the tun device {INTERFACE}"))?;
        check(libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong), || format!("failed to make {INTERFACE} persist"))?;
    }
    Ok(tun)
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
