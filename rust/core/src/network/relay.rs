//! Joining two connections, for every connection the runtime relays: a box's way out
//! ([`super::proxy`]), a published port's and a tunnel's ([`super::ports`]).
//!
//! Between two sockets the bytes move with splice(2), through a pipe per direction: they never
//! cross into the runtime's memory, so a relayed download costs the runtime about half the
//! processor time of copying it through a buffer, and a relay holds no buffer of its own (a
//! copying one keeps up to 512 KiB for as long as its connection lives). Any other stream (a tunnel
//! through a REST server) is copied through a buffer.
//!
//! # Rules
//!
//! 1. Each direction ends on its own: the end of one side's stream shuts the other side's
//!    writing, so a peer that half-closes (the end of a request's body) still gets its answer.
//!    The relay ends when both have, or at the first error (which closes both sides).
//! 2. Bytes are counted as they move, so a box's metrics show a long transfer as it runs.
//! 3. A direction's pipe (or buffer) is emptied before the socket is read again: so a pipe
//!    never fills, and a `WouldBlock` from a splice is always the socket's own (which alone may
//!    clear the socket's readiness).
//! 4. A relay never raises SIGPIPE: its threads block it
//!    ([`crate::process::keep_sigpipe_from_this_thread`]).
//! 5. Relays' pipes take at most a quarter of the runtime's descriptors ([`PipeBudget`]),
//!    so that busy networks leave the rest to boxes and executions. A relay that cannot have
//!    its pipes (past that share, or none left) copies instead: it is slower, never refused.
//! 6. Both sockets are the runtime's process's alone ([`ParentOnly`]), whether their bytes are
//!    spliced or copied: a child forked from it while the connection lasts holds neither, so
//!    either end closing reaches the other peer.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::PortStream;
use crate::exec::fd::Registered;
use crate::fork::ParentOnly;

/// Each direction's buffer when a relay copies: tokio's default (8 KiB) costs a system call
/// pair per 8 KiB, which showed as a third of a download's throughput.
const COPY_BUFFER: usize = 256 << 10;

/// What a pipe holds, and so the most one splice moves: a new pipe's default (16 pages)...
const SPLICE_CHUNK: usize = 64 << 10;

/// ...and a bulk transfer's, once a splice filled the pipe: about a tenth faster here. Only root's
/// runtime grows its pipes: an ordinary user's pipes share one budget
/// (`fs.pipe-user-pages-soft`), past which the kernel gives the user's new pipes 2 pages.
const BULK_CHUNK: usize = 1 << 20;

/// A connected stream socket the runtime holds through tokio.
pub(super) trait Socket: AsyncRead + AsyncWrite + Unpin + Send {
    /// The socket, out of tokio's reactor (still non-blocking), kept by this process alone.
    fn into_parent_only(self) -> io::Result<ParentOnly<OwnedFd>>;
}

impl Socket for ParentOnly<TcpStream> {
    fn into_parent_only(self) -> io::Result<ParentOnly<OwnedFd>> {
        self.try_map(|stream| Ok(stream.into_std()?.into()))
    }
}

impl Socket for ParentOnly<UnixStream> {
    fn into_parent_only(self) -> io::Result<ParentOnly<OwnedFd>> {
        self.try_map(|stream| Ok(stream.into_std()?.into()))
    }
}

/// `stream` as the TCP connection into a box it is, if it is one ([`super::Inside`]'s, kept
/// by the runtime's process alone).
pub(super) fn tcp(stream: Box<dyn PortStream>) -> Result<ParentOnly<TcpStream>, Box<dyn PortStream>> {
    // Through the box, not on it: the box is itself a stream, and would answer for itself.
    if !(*stream).as_any().is::<ParentOnly<TcpStream>>() {
        return Err(stream);
    }
    Ok(*stream.into_any().downcast::<ParentOnly<TcpStream>>().expect("the stream was checked to be a TCP connection"))
}

/// Joins two sockets until both directions end (rules 1 and 5), counting what `a` sends `b`
/// into `a_to_b` and the rest into `b_to_a`.
pub(super) async fn join(a: impl Socket, b: impl Socket, a_to_b: &AtomicU64, b_to_a: &AtomicU64) -> io::Result<()> {
    static PIPES: std::sync::OnceLock<PipeBudget> = std::sync::OnceLock::new();
    join_within(PIPES.get_or_init(PipeBudget::for_this_process), a, b, a_to_b, b_to_a).await
}

async fn join_within(pipes: &'static PipeBudget, a: impl Socket, b: impl Socket, a_to_b: &AtomicU64, b_to_a: &AtomicU64) -> io::Result<()> {
    let (a, b) = (Registered::new(a.into_parent_only()?)?, Registered::new(b.into_parent_only()?)?);
    let (forth, back) = match (Pipe::new(pipes), Pipe::new(pipes)) {
        (Ok(forth), Ok(back)) => (Through::Pipe(forth), Through::Pipe(back)),
        _ => (Through::buffer(), Through::buffer()),
    };
    tokio::try_join!(pump(&a, &b, forth, a_to_b), pump(&b, &a, back, b_to_a))?;
    Ok(())
}

/// What a direction's bytes go through on their way: a pipe they are spliced into and out of,
/// or (past the pipe budget: rule 5) a buffer they are copied into and out of.
enum Through {
    Pipe(Pipe),
    Buffer(Box<[u8]>),
}

impl Through {
    fn buffer() -> Self {
        Self::Buffer(vec![0; COPY_BUFFER].into_boxed_slice())
    }

    /// Takes up to `chunk` bytes (a buffer: what it holds) that `socket` received; 0 at the end
    /// of its stream.
    fn take(&mut self, socket: RawFd, chunk: usize) -> io::Result<usize> {
        match self {
            Self::Pipe(pipe) => splice(socket, pipe.write.as_raw_fd(), chunk),
            Self::Buffer(buffer) => {
                // SAFETY: recv(2) writes at most the buffer's length into it.
                let got = unsafe { libc::recv(socket, buffer.as_mut_ptr().cast(), buffer.len(), libc::MSG_DONTWAIT) };
                if got < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(got as usize)
            }
        }
    }

    /// Sends `socket` up to `left` of the `taken` bytes last taken, the ones not sent yet.
    fn deliver(&self, socket: RawFd, taken: usize, left: usize) -> io::Result<usize> {
        match self {
            Self::Pipe(pipe) => splice(pipe.read.as_raw_fd(), socket, left),
            Self::Buffer(buffer) => {
                let unsent = &buffer[taken - left..taken];
                // SAFETY: send(2) reads at most `unsent.len()` bytes of it.
                let sent = unsafe { libc::send(socket, unsent.as_ptr().cast(), unsent.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
                if sent < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(sent as usize)
            }
        }
    }
}

/// Joins two streams by copying through a buffer each way (rule 1; counted at the end).
pub(super) async fn copy<A, B>(mut a: A, mut b: B, a_to_b: &AtomicU64, b_to_a: &AtomicU64) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (forth, back) = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, COPY_BUFFER, COPY_BUFFER).await?;
    a_to_b.fetch_add(forth, Ordering::Relaxed);
    b_to_a.fetch_add(back, Ordering::Relaxed);
    Ok(())
}

/// Moves what `from` sends to `to` until `from`'s stream ends, then shuts `to`'s writing.
async fn pump(from: &Registered, to: &Registered, mut through: Through, moved: &AtomicU64) -> io::Result<()> {
    let mut chunk = SPLICE_CHUNK;
    loop {
        let taken = loop {
            let mut ready = from.readable().await?;
            if let Ok(result) = ready.try_io(|socket| through.take(socket.as_raw_fd(), chunk)) {
                break result?;
            }
        };
        if let Through::Pipe(pipe) = &through {
            if taken == chunk && chunk < BULK_CHUNK && may_grow_pipes() {
                chunk = pipe.grow(BULK_CHUNK).unwrap_or(chunk);
            }
        }
        if taken == 0 {
            // SAFETY: shutdown(2) on a socket this relay owns; it touches no memory.
            if unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) } != 0 {
                let error = io::Error::last_os_error();
                if error.raw_os_error() != Some(libc::ENOTCONN) {
                    return Err(error);
                }
            }
            return Ok(());
        }
        crate::process::keep_sigpipe_from_this_thread();
        let mut left = taken;
        while left > 0 {
            let mut ready = to.writable().await?;
            if let Ok(result) = ready.try_io(|socket| through.deliver(socket.as_raw_fd(), taken, left)) {
                let delivered = result?;
                left -= delivered;
                moved.fetch_add(delivered as u64, Ordering::Relaxed);
            }
        }
    }
}

/// splice(2) of up to `length` bytes from `from` to `to`, never blocking.
fn splice(from: RawFd, to: RawFd, length: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the call (owned by the caller's relay); null
    // offsets, as splice(2) asks for a socket or a pipe; the kernel touches no memory of ours.
    let moved = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), length, libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(moved as usize)
}

/// Whether this runtime may grow its pipes without taking from anyone's budget: root's may.
fn may_grow_pipes() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    *ROOT.get_or_init(|| unsafe { libc::geteuid() } == 0)
}

/// How many pipes relays hold, and may hold, at once (rule 5).
struct PipeBudget {
    held: AtomicUsize,
    most: usize,
}

impl PipeBudget {
    /// A quarter of this process's descriptor limit (as the runtime raised it), two a pipe.
    fn for_this_process() -> Self {
        let descriptors = usize::try_from(crate::host::open_files_limit()).unwrap_or(usize::MAX);
        Self { held: AtomicUsize::new(0), most: descriptors / 8 }
    }
}

/// A pipe, both ends non-blocking, counted in its budget while it lives.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    budget: &'static PipeBudget,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pipe {
    fn new(budget: &'static PipeBudget) -> io::Result<Self> {
        if budget.held.fetch_add(1, Ordering::Relaxed) >= budget.most {
            budget.held.fetch_sub(1, Ordering::Relaxed);
            return Err(io::Error::other("the relays' share of descriptors is taken"));
        }
        let mut ends = [0; 2];
        // SAFETY: pipe2(2) writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            let error = io::Error::last_os_error();
            budget.held.fetch_sub(1, Ordering::Relaxed);
            return Err(error);
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
        Ok(unsafe { Self { read: OwnedFd::from_raw_fd(ends[0]), write: OwnedFd::from_raw_fd(ends[1]), budget } })
    }

    /// Grows the pipe to hold `size` bytes; what it holds now.
    fn grow(&self, size: usize) -> io::Result<usize> {
        // SAFETY: F_SETPIPE_SZ on a pipe this relay owns; it touches no memory of ours.
        let now = unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
        if now < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(now as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connecting = TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, connected) = tokio::join!(listener.accept(), connecting);
        (accepted.unwrap().0, connected.unwrap())
    }

    /// A client and a server joined through a relay with `pipes`: the server reads the request
    /// to its end (the client half-closed), then answers with more than a pipe, or a copying
    /// relay's buffer, holds; both counts agree.
    async fn a_half_closed_request_gets_its_whole_answer_within(pipes: &'static PipeBudget) {
        let (mut client, relay_client_side) = pair().await;
        let (relay_server_side, mut server) = pair().await;
        let (sent, received) = (AtomicU64::new(0), AtomicU64::new(0));
        let answer: Vec<u8> = (0..(3 << 20) + 17).map(|index| (index % 251) as u8).collect();
        let serving = async {
            let mut request = Vec::new();
            server.read_to_end(&mut request).await.unwrap();
            server.write_all(&answer).await.unwrap();
            server.shutdown().await.unwrap();
            request
        };
        let asking = async {
            client.write_all(b"a request").await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        };
        let (request, got, relayed) = tokio::join!(serving, asking, join_within(pipes, ParentOnly::new(relay_client_side), ParentOnly::new(relay_server_side), &sent, &received));
        relayed.unwrap();
        assert_eq!(request, b"a request");
        assert!(got == answer, "the answer arrived changed ({} bytes of {})", got.len(), answer.len());
        assert_eq!((sent.into_inner(), received.into_inner()), (9, answer.len() as u64));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_closed_request_gets_its_whole_answer() {
        a_half_closed_request_gets_its_whole_answer_within(Box::leak(Box::new(PipeBudget { held: AtomicUsize::new(0), most: 2 }))).await;
    }

    /// Rule 5: the same through a relay that copies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_closed_request_gets_its_whole_answer_through_a_copying_relay() {
        a_half_closed_request_gets_its_whole_answer_within(Box::leak(Box::new(PipeBudget { held: AtomicUsize::new(0), most: 0 }))).await;
    }

    /// Rule 2: what moved is counted while the connection lasts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_are_counted_as_they_move() {
        let (mut client, relay_client_side) = pair().await;
        let (relay_server_side, mut server) = pair().await;
        let (sent, received) = (std::sync::Arc::new(AtomicU64::new(0)), std::sync::Arc::new(AtomicU64::new(0)));
        let relaying = tokio::spawn({
            let (sent, received) = (std::sync::Arc::clone(&sent), std::sync::Arc::clone(&received));
            async move { join(ParentOnly::new(relay_client_side), ParentOnly::new(relay_server_side), &sent, &received).await }
        });
        server.write_all(&[7; 100_000]).await.unwrap();
        let mut got = vec![0; 100_000];
        client.read_exact(&mut got).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while received.load(Ordering::Relaxed) < 100_000 {
            assert!(std::time::Instant::now() < deadline, "not counted while the connection lasts");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(received.load(Ordering::Relaxed), 100_000);
        drop((client, server));
        relaying.await.unwrap().unwrap();
    }

    /// Rule 5: past the budget a relay copies, and a relay's pipes go back to it as it ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relays_past_the_pipe_budget_copy() {
        let budget: &'static PipeBudget = Box::leak(Box::new(PipeBudget { held: AtomicUsize::new(0), most: 3 }));
        let (sent, received) = (AtomicU64::new(0), AtomicU64::new(0));
        let relay = |client_side, server_side| join_within(budget, ParentOnly::new(client_side), ParentOnly::new(server_side), &sent, &received);
        let (mut first_client, first_in) = pair().await;
        let (first_out, mut first_server) = pair().await;
        let (mut second_client, second_in) = pair().await;
        let (second_out, mut second_server) = pair().await;
        let both = async {
            // The first relay holds two pipes; the second finds one left, and copies.
            let first = relay(first_in, first_out);
            let second = relay(second_in, second_out);
            tokio::join!(first, second)
        };
        let talk = async {
            for (client, server) in [(&mut first_client, &mut first_server), (&mut second_client, &mut second_server)] {
                client.write_all(b"ping").await.unwrap();
                let mut got = [0; 4];
                server.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"ping");
            }
            assert!(budget.held.load(Ordering::Relaxed) <= budget.most);
            drop((first_client, first_server, second_client, second_server));
        };
        let ((first, second), ()) = tokio::join!(both, talk);
        first.unwrap();
        second.unwrap();
        assert_eq!(budget.held.load(Ordering::Relaxed), 0, "every pipe went back");
        assert_eq!(sent.into_inner(), 8);
    }

    /// Rule 4: a splice into a connection its peer reset raises SIGPIPE, and the relay's
    /// thread holds it pending instead of taking its action (the process's end, when a program
    /// restored the default); the splice fails with EPIPE.
    #[test]
    fn a_reset_peer_raises_no_sigpipe_in_a_relay_thread() {
        std::thread::spawn(|| {
            use std::io::{Read, Write};

            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (peer, _) = listener.accept().unwrap();
            // SAFETY: SO_LINGER with a zero timeout on a socket we own: close sends a reset.
            unsafe {
                let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                libc::setsockopt(peer.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, std::ptr::addr_of!(linger).cast(), std::mem::size_of::<libc::linger>() as u32);
            }
            drop(peer);
            // A blocking read: it returns as the reset arrives, and takes its error.
            assert!(ours.read(&mut [0; 1]).is_err(), "the reset is read (and its error taken)");
            let budget: &'static PipeBudget = Box::leak(Box::new(PipeBudget { held: AtomicUsize::new(0), most: 1 }));
            let pipe = Pipe::new(budget).unwrap();
            std::fs::File::from(pipe.write.try_clone().unwrap()).write_all(b"late").unwrap();
            crate::process::keep_sigpipe_from_this_thread();
            let error = splice(pipe.read.as_raw_fd(), ours.as_raw_fd(), 4).unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::EPIPE));
            // SAFETY: sigpending fills the set we own; sigismember reads it.
            let pending = unsafe {
                let mut set = std::mem::zeroed::<libc::sigset_t>();
                libc::sigpending(&mut set);
                libc::sigismember(&set, libc::SIGPIPE)
            };
            assert_eq!(pending, 1, "SIGPIPE was raised, and held by the thread's mask");
        })
        .join()
        .unwrap();
    }

    #[tokio::test]
    async fn a_stream_is_told_a_tcp_connection_or_not() {
        let (one, _other) = pair().await;
        assert!(tcp(Box::new(ParentOnly::new(one))).is_ok());
        let (unix, _peer) = UnixStream::pair().unwrap();
        assert!(tcp(Box::new(unix)).is_err());
    }
}
