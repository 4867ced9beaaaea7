//! The box's interface, made ahead of need in the box's network namespace while the shim is
//! still root there (`boxlite_protocol::network` says what it is and why it leads nowhere): a
//! device that passes nothing on (ifb, or tun), with the box's address and a default route, and
//! the sockets the runtime serves the box's way out on; `nftables` loads the rules that divert
//! what leaves the box. A box without a network gets a shim made without it, and has loopback only.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use boxlite_protocol::network::{ADDRESS, DNS_PORT, GATEWAY, INTERFACE, PREFIX_LENGTH, PROXY_PORT};

use crate::netlink::{Writer, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use crate::sys::{check, Result, SysError};

/// Makes the interface. Loopback comes up first: the runtime listens on it as soon as the shim
/// reports.
pub fn prepare_interface() -> Result<()> {
    crate::jail::bring_up_loopback()?;
    make_interface()?;
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
    let setting = "sys/net/ipv4/ip_unprivileged_port_start";
    own_proc()
        .and_then(|proc| write_at(proc.as_fd(), setting))
        .or_else(|_| std::fs::write(format!("/proc/{setting}"), "0"))
        .map_err(|source| SysError { operation: "failed to let box processes listen on any port".to_string(), source })
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

/// Writes `0` to the file `path` names under `dir`.
fn write_at(dir: BorrowedFd<'_>, path: &str) -> std::io::Result<()> {
    let path = std::ffi::CString::new(path).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: openat on a valid directory descriptor and C string; the descriptor is owned at once.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: see above.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::io::Write::write_all(&mut &file, b"0")
}

/// Makes the sockets the runtime serves the box's way out on (`boxlite_protocol::BOX_SOCKETS`)
/// and sends them on `startup`. They exist before any box process could take their ports.
pub fn send_box_sockets(startup: BorrowedFd<'_>) -> Result<()> {
    let sockets = [socket(libc::SOCK_STREAM, Some(PROXY_PORT))?, socket(libc::SOCK_DGRAM, Some(DNS_PORT))?];
    let borrowed: Vec<BorrowedFd<'_>> = sockets.iter().map(AsFd::as_fd).collect();
    boxlite_protocol::send_packet(startup, &[boxlite_protocol::BOX_SOCKETS], &borrowed).map_err(|source| SysError { operation: "failed to hand the box's sockets to the runtime".to_string(), source })
}

/// A non-blocking IPv4 socket of `kind` in this process's network namespace; with `port`, bound
/// to 127.0.0.1:`port` (a stream one listening).
pub fn socket(kind: libc::c_int, port: Option<u16>) -> Result<OwnedFd> {
    // SAFETY: socket returns a new descriptor, owned at once.
    let socket = unsafe { OwnedFd::from_raw_fd(check(libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0), || "failed to make a socket in the box".to_string())?) };
    let Some(port) = port else { return Ok(socket) };
    let what = || format!("failed to listen on 127.0.0.1:{port} in the box");
    // SAFETY: bind and listen read a sockaddr_in that lives through the calls.
    unsafe {
        let mut address = socket_address([127, 0, 0, 1]);
        address.sin_port = port.to_be();
        check(libc::bind(socket.as_raw_fd(), std::ptr::addr_of!(address).cast(), std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t), what)?;
        if kind == libc::SOCK_STREAM {
            check(libc::listen(socket.as_raw_fd(), libc::SOMAXCONN), what)?;
        }
        Ok(socket)
    }
}

/// rtnetlink's numbers (<linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>).
const NETLINK_ROUTE: libc::c_int = 0;
const RTM_NEWLINK: u16 = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;

/// Makes the interface: an ifb device (which passes on only what traffic control redirects to
/// it, and nothing does), made with one rtnetlink request by any root of the namespace, or a tun
/// device that nothing reads where the kernel has no ifb. Both lead nowhere, and both are cheap
/// to remove: a hundred boxes' bridges removed at once held the next hundred boxes' starts up
/// by a second or more, ifb and tun devices by nothing measurable.
fn make_interface() -> Result<()> {
    let made = make_link(b"ifb");
    let Err(error) = made else { return Ok(()) };
    if error.source.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(error);
    }
    let path = c"/dev/net/tun";
    // SAFETY: open of a constant path; the descriptor is owned at once.
    let tun = unsafe { OwnedFd::from_raw_fd(check(libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC), || "failed to make the box's interface: the kernel has no ifb devices, and /dev/net/tun cannot be opened".to_string())?) };
    make_tun(&tun)
}

/// Makes `tun` a tun device named after the interface, which outlives its descriptor.
fn make_tun(tun: &OwnedFd) -> Result<()> {
    let mut interface = interface_request();
    interface.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads the ifreq, alive through the call; TUNSETPERSIST takes an integer.
    unsafe {
        check(libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &interface), || format!("failed to make the tun device {INTERFACE}"))?;
        check(libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong), || format!("failed to make {INTERFACE} persist"))?;
    }
    Ok(())
}

/// Makes the interface a link of `kind` (rtnetlink's name for it), with one RTM_NEWLINK request.
fn make_link(kind: &[u8]) -> Result<()> {
    let mut request = Writer::default();
    // After the header, a `struct ifinfomsg` of zeroes: any family, no index yet.
    request.begin_message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 1, &[0; 16]);
    request.string(IFLA_IFNAME, INTERFACE);
    request.nest(IFLA_LINKINFO, |link| link.attribute(IFLA_INFO_KIND, kind));
    request.end_message();
    request.send(NETLINK_ROUTE).map_err(|source| SysError { operation: format!("failed to make the interface {INTERFACE}"), source })
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
