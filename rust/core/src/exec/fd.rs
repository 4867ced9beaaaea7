//! Descriptor plumbing for executions: pipes, the per-execution control connection, and async
//! readers and writers over raw descriptors.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use boxlite_protocol::{decode, encode, recv_packet, send_packet, Reply, Request};
use tokio::io::unix::AsyncFd;

use crate::fork::{forked_away, ParentOnly};

/// Pipes to a box process get 1 MiB of kernel buffer: the default 64 KiB halves throughput.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Makes a descriptor non-blocking. Only for the pipes, sockets, terminals and inotify
/// descriptors made here or by the init: none has another flag that F_SETFL sets (O_APPEND,
/// O_ASYNC, O_DIRECT, O_NOATIME), so one call replaces them all.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors that we take ownership of.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Gives a pipe room for a flood of output: done by a consumer once it streams, so that a
/// short command's pipes cost no more than the default.
pub fn enlarge_pipe(fd: &OwnedFd) {
    // SAFETY: F_SETPIPE_SZ on our pipe; failure (e.g. a lowered pipe-max-size) only costs speed.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
}

/// A descriptor registered with tokio's reactor that only this process keeps
/// ([`ParentOnly`]): a child forked from it closes its copy at once, so the other end of the
/// pipe or socket learns that it closed here, whatever the child does. It reads as the
/// reactor's `AsyncFd` of the descriptor.
pub struct Registered {
    /// Declared before `fd`, so it leaves the reactor before the descriptor closes.
    reactor: AsyncFd<RawFd>,
    fd: ParentOnly<OwnedFd>,
}

impl Registered {
    /// Must run inside tokio's runtime.
    pub fn new(fd: ParentOnly<OwnedFd>) -> io::Result<Self> {
        let raw = fd.get().ok_or_else(forked_away)?.as_raw_fd();
        // SAFETY: `fd` keeps the descriptor open until `self` drops, and `reactor` drops first
        // (field order).
        let reactor = unsafe { AsyncFd::register(raw) }.map_err(io::Error::from)?;
        Ok(Self { reactor, fd })
    }

    /// The descriptor itself (an error in a child forked since it was registered).
    pub fn fd(&self) -> io::Result<&OwnedFd> {
        self.fd.get().ok_or_else(forked_away)
    }
}

impl std::ops::Deref for Registered {
    type Target = AsyncFd<RawFd>;

    fn deref(&self) -> &AsyncFd<RawFd> {
        &self.reactor
    }
}

/// A non-blocking descriptor registered with tokio, kept by this process alone ([`Registered`]).
pub struct AsyncDescriptor {
    inner: Registered,
}

impl AsyncDescriptor {
    pub fn new(fd: ParentOnly<OwnedFd>) -> io::Result<Self> {
        set_nonblocking(fd.get().ok_or_else(forked_away)?.as_raw_fd())?;
        Ok(Self { inner: Registered::new(fd)? })
    }

    /// [`enlarge_pipe`] for this descriptor (a pipe).
    pub fn enlarge_pipe(&self) {
        if let Ok(fd) = self.inner.fd() {
            enlarge_pipe(fd);
        }
    }

    /// Reads up to `max` bytes; `None` at end of stream. A terminal's master reports EIO once the
    /// last process holding the terminal has gone: that is its end of stream.
    pub async fn read_chunk(&self, max: usize) -> io::Result<Option<Vec<u8>>> {
        self.read_chunk_after(&[], max).await
    }

    /// [`AsyncDescriptor::read_chunk`], into a buffer that starts with `prefix` (a frame's
    /// header, so the chunk needs no copy to become the frame).
    pub async fn read_chunk_after(&self, prefix: &[u8], max: usize) -> io::Result<Option<Vec<u8>>> {
        // Not zero-filled: the kernel writes the bytes it reports, and only those are kept.
        let mut buffer: Vec<u8> = Vec::with_capacity(prefix.len() + max);
        buffer.extend_from_slice(prefix);
        loop {
            let mut guard = self.inner.readable().await?;
            let result = guard.try_io(|fd| {
                let spare = buffer.spare_capacity_mut();
                // SAFETY: reads at most `spare.len()` bytes into memory we own; `read` never
                // reads from the buffer, so its being uninitialised is fine.
                let count = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
                if count < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(count as usize)
                }
            });
            match result {
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(count)) => {
                    // SAFETY: the kernel initialised exactly `count` bytes after the prefix.
                    unsafe { buffer.set_len(prefix.len() + count) };
                    buffer.shrink_to_fit();
                    return Ok(Some(buffer));
                }
                Ok(Err(error)) if error.raw_os_error() == Some(libc::EIO) => return Ok(None),
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => {}
            }
        }
    }

    /// Writes all of `data`, waiting for room when the pipe is full.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.inner.writable().await?;
            let result = guard.try_io(|fd| {
                // SAFETY: writes from a slice that outlives the call.
                let count = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if count < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(count as usize)
                }
            });
            match result {
                Ok(Ok(count)) => data = &data[count..],
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }
}

/// What one non-blocking receive on a control connection found.
pub enum Packet {
    Reply(Reply, Vec<OwnedFd>),
    /// The init closed the connection.
    Closed,
}

/// A connected pair of blocking, close-on-exec `SOCK_SEQPACKET` unix sockets.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two new descriptors into `fds`, owned from here on.
    unsafe {
        if libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// A connection to a box's init: an execution's, the one exec requests travel on (the box's
/// lifeline, or a connection to its control socket), or one for a Shutdown or an Attach. Registered with tokio's reactor only when an async call first has
/// to wait on it: a connection that the caller's own event loop reads, and whose sends find
/// room, never costs the reactor anything.
pub struct ControlSocket {
    /// Declared before `fd`, so it leaves the reactor before the descriptor closes.
    reactor: tokio::sync::OnceCell<AsyncFd<RawFd>>,
    /// A forked child lets go of it: the runtime's end of a lifeline or an execution's
    /// connection says, by closing, that the runtime is gone.
    fd: ParentOnly<OwnedFd>,
}

impl ControlSocket {
    fn new(fd: ParentOnly<OwnedFd>) -> Self {
        Self { reactor: tokio::sync::OnceCell::new(), fd }
    }

    pub fn connect(path: &Path) -> io::Result<Self> {
        // SAFETY: socket + connect on a fresh descriptor; the sockaddr is filled from a path
        // whose length is checked against sun_path first.
        let fd = unsafe {
            // Non-blocking from the start: connect must never park the thread that makes it (a
            // full backlog answers EAGAIN instead of waiting).
            let raw = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0);
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(raw);
            let mut address: libc::sockaddr_un = std::mem::zeroed();
            address.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
            if bytes.len() >= address.sun_path.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("socket path too long: {}", path.display())));
            }
            for (slot, byte) in address.sun_path.iter_mut().zip(bytes) {
                *slot = *byte as libc::c_char;
            }
            let length = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
            if libc::connect(raw, std::ptr::addr_of!(address).cast(), length as libc::socklen_t) < 0 {
                return Err(io::Error::last_os_error());
            }
            fd
        };
        Ok(Self::new(ParentOnly::new(fd)))
    }

    /// A connection made blocking elsewhere (a box's lifeline, once its start-up is over), made
    /// non-blocking.
    pub fn from_connected(fd: ParentOnly<OwnedFd>) -> io::Result<Self> {
        set_nonblocking(fd.get().ok_or_else(forked_away)?.as_raw_fd())?;
        Ok(Self::new(fd))
    }

    /// Resolves once the other end has closed, on a connection on which the other end sends
    /// nothing (a box's lifeline: its init never answers there). The readiness is kept, so
    /// later waiters return at once.
    pub async fn hung_up(&self) {
        if let Ok(reactor) = self.reactor().await {
            let _ = reactor.readable().await;
        }
    }

    /// Whether the other end has closed, waiting up to `timeout`; see [`ControlSocket::hung_up`].
    pub fn hung_up_within(&self, timeout: std::time::Duration) -> bool {
        let Ok(fd) = self.fd() else { return true };
        let mut pollfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let milliseconds = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: polls one valid pollfd.
        unsafe { libc::poll(&mut pollfd, 1, milliseconds) > 0 }
    }

    /// A connected pair: ours, non-blocking, and the other end, blocking, for the init.
    pub fn pair() -> io::Result<(Self, OwnedFd)> {
        let (ours, theirs) = seqpacket_pair()?;
        Ok((Self::from_connected(ParentOnly::new(ours))?, theirs))
    }

    /// The pid of the process that listens on the other end (as this process's pid namespace
    /// numbers it).
    pub fn peer_pid(&self) -> io::Result<i32> {
        let mut credentials = libc::ucred { pid: 0, uid: 0, gid: 0 };
        let mut length = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `length` bytes into `credentials`, which outlives it.
        let code = unsafe { libc::getsockopt(self.fd()?.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, std::ptr::addr_of_mut!(credentials).cast(), &mut length) };
        if code < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(credentials.pid)
    }

    /// The descriptor's number; -1 in a child forked from the runtime's process.
    pub fn raw(&self) -> RawFd {
        self.fd.get().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// The descriptor; an error in a child forked from the runtime's process, where the number
    /// no longer stands for it (`fork` rule 2).
    fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        self.fd.get().map(AsFd::as_fd).ok_or_else(forked_away)
    }

    /// The connection as tokio's reactor knows it, registered once, on first use.
    async fn reactor(&self) -> io::Result<&AsyncFd<RawFd>> {
        self.reactor
            .get_or_try_init(|| async {
                // SAFETY: `fd` stays open until `self` drops, and `reactor` drops first (field
                // order).
                unsafe { AsyncFd::register(self.fd()?.as_raw_fd()) }.map_err(io::Error::from)
            })
            .await
    }

    /// Sends without waiting: false if there is no room now.
    pub fn try_send(&self, request: &Request, fds: &[&OwnedFd]) -> io::Result<bool> {
        let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
        match send_packet(self.fd()?, &encode(request), &borrowed) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(error) => Err(error),
        }
    }

    pub async fn send(&self, request: &Request, fds: &[&OwnedFd]) -> io::Result<()> {
        if self.try_send(request, fds)? {
            return Ok(());
        }
        let bytes = encode(request);
        let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
        loop {
            let mut guard = self.reactor().await?.writable().await?;
            match guard.try_io(|_| send_packet(self.fd()?, &bytes, &borrowed)) {
                Ok(result) => return result,
                Err(_would_block) => {}
            }
        }
    }

    /// The next packet if one has arrived, without waiting.
    pub fn try_recv(&self, buffer: &mut Vec<u8>) -> io::Result<Option<Packet>> {
        match recv_packet(self.fd()?, buffer) {
            Ok((0, fds)) if fds.is_empty() => Ok(Some(Packet::Closed)),
            Ok((length, fds)) => Ok(Some(Packet::Reply(decode(&buffer[..length])?, fds))),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The next packet, waiting for it.
    pub async fn recv(&self) -> io::Result<Packet> {
        let mut buffer = Vec::new();
        loop {
            if let Some(packet) = self.try_recv(&mut buffer)? {
                return Ok(packet);
            }
            self.reactor().await?.readable().await?.clear_ready();
        }
    }

    /// Asks the init listening at `path`, on a connection of its own, for the `N` descriptors
    /// `request` is answered with (one for `Request::Socket` and `Request::Root`, two for
    /// `Request::Network`).
    pub async fn ask_for_descriptors<const N: usize>(path: &Path, request: &Request) -> io::Result<[OwnedFd; N]> {
        let control = Self::connect(path)?;
        control.send(request, &[]).await?;
        match control.recv().await? {
            Packet::Reply(Reply::Done, fds) => <[OwnedFd; N]>::try_from(fds).map_err(|fds| io::Error::other(format!("the box's init sent {} descriptors where {N} were asked for", fds.len()))),
            Packet::Reply(Reply::Refused { message }, _) => Err(io::Error::other(message)),
            _ => Err(io::Error::other("the box's init did not answer")),
        }
    }

    /// Ends the connection in both directions, even while other tasks hold the socket: the init
    /// then kills the execution's process group.
    pub fn hang_up(&self) {
        if let Ok(fd) = self.fd() {
            // SAFETY: shutdown(2) on a descriptor we own; it does not close the descriptor.
            unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }
}
