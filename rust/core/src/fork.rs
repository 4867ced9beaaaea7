//! What a child forked from the runtime's process lets go of.
//!
//! A program that forks without executing (Python's `multiprocessing` with its `fork` start
//! method, the default on Linux before Python 3.14; `os.fork`; pre-forking servers) gives its
//! child a copy of every descriptor, the runtime's among them. A child that outlives its
//! parent would then hold what speaks for the runtime: the home's lock (no program could open
//! the home), the lifelines of boxes that end with the runtime and the connections of its
//! executions (boxes and processes would live on after the runtime's end), the socket of its
//! guardian (no keeper would serve its detached boxes), the request socket of an ordinary
//! user's shim spawner (which would stay). A child that lives on while its parent runs would
//! hold the runtime's ends of executions' pipes and terminals and of relayed connections: a
//! box process would never read the end of its stdin, a peer never see its connection close,
//! until the child ends. The child cannot use the runtime, whose threads were not copied, so
//! it closes those descriptors in a fork handler, before fork() returns.
//!
//! # Rules
//!
//! 1. Such a descriptor is held as a [`ParentOnly`], which registers it when made and, when
//!    dropped, unregisters and closes it under the registry's lock. The fork handlers hold
//!    that lock across fork(), so the child closes exactly the descriptors registered at that
//!    moment, never a number the parent had closed and handed out again. The sockets the
//!    runtime makes for a box's traffic, which a connect may keep waiting, are made under that
//!    lock too ([`ParentOnly::make`]), so no fork falls between their making and their
//!    registering; what it receives (from a box's init, from an accept) or makes otherwise
//!    (pipes, socket pairs) is held as soon as it is there.
//! 2. In the child, a [`ParentOnly`] made before the fork gives no descriptor
//!    ([`ParentOnly::get`]) and closes nothing when dropped: its number may be another file's
//!    by then. Each fork handled in a child starts a new generation of holders, which those
//!    made in the child belong to.
//! 3. Only fork() runs the handlers, never posix_spawn or vfork; and a child that executes a
//!    program closes these descriptors then anyway (they are close-on-exec), so the processes
//!    the runtime starts lose nothing by them.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::task::{Context, Poll};

/// The registered descriptors.
static REGISTERED: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());
/// The holders' generation: one more in each child the handlers ran in (rule 2).
static GENERATION: AtomicU64 = AtomicU64::new(0);
static HANDLERS: Once = Once::new();

thread_local! {
    /// The registry's lock, held by the forking thread from before fork() until after it.
    static HELD_ACROSS_FORK: RefCell<Option<MutexGuard<'static, BTreeSet<RawFd>>>> = const { RefCell::new(None) };
}

fn registry() -> MutexGuard<'static, BTreeSet<RawFd>> {
    REGISTERED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The registry, once the fork handlers that keep it are installed.
fn registry_with_handlers() -> MutexGuard<'static, BTreeSet<RawFd>> {
    HANDLERS.call_once(|| {
        // SAFETY: the three handlers are `extern "C"` functions that live as long as the
        // process; pthread_atfork only records them.
        unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork_in_parent), Some(after_fork_in_child)) };
    });
    registry()
}

/// A descriptor (in a `File`, a socket, an `OwnedFd`) that only this process keeps: a child
/// forked from it closes it at once (rules 1 and 2).
#[derive(Debug)]
pub struct ParentOnly<T: AsRawFd> {
    held: ManuallyDrop<T>,
    generation: u64,
}

impl<T: AsRawFd> ParentOnly<T> {
    /// Holds a descriptor made elsewhere (received from another process, accepted): a fork
    /// between its making and this call gives the child a copy.
    pub fn new(held: T) -> Self {
        let mut registered = registry_with_handlers();
        registered.insert(held.as_raw_fd());
        Self { held: ManuallyDrop::new(held), generation: GENERATION.load(Ordering::Relaxed) }
    }

    /// Holds the descriptor `make` makes, registered as it is made: the registry's lock is
    /// held throughout, so no fork() from another thread falls in between (rule 1). `make`
    /// must make no `ParentOnly` itself.
    pub fn make(make: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<Self> {
        let mut registered = registry_with_handlers();
        let held = make()?;
        registered.insert(held.as_raw_fd());
        Ok(Self { held: ManuallyDrop::new(held), generation: GENERATION.load(Ordering::Relaxed) })
    }

    /// The descriptor; `None` in a child forked since it was made (rule 2).
    pub fn get(&self) -> Option<&T> {
        self.is_ours().then_some(&*self.held)
    }

    /// As [`Self::get`], to change it (read from a stream, for one).
    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.is_ours().then_some(&mut *self.held)
    }

    fn is_ours(&self) -> bool {
        self.generation == GENERATION.load(Ordering::Relaxed)
    }

    /// The same descriptor held as another type: `convert` keeps its number (a tokio socket
    /// made std, a std socket made an `OwnedFd`), and makes no `ParentOnly` itself. It stays
    /// registered throughout, the registry's lock held, so no fork in between gives a child a
    /// copy (rule 1). If `convert` fails (it closed the descriptor), its error.
    pub fn try_map<U: AsRawFd>(self, convert: impl FnOnce(T) -> std::io::Result<U>) -> std::io::Result<ParentOnly<U>> {
        if !self.is_ours() {
            return Err(forked_away());
        }
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so its `held` is taken once, here.
        let held = unsafe { ManuallyDrop::take(&mut this.held) };
        let number = held.as_raw_fd();
        let mut registered = registry();
        match convert(held) {
            Ok(converted) => {
                assert_eq!(converted.as_raw_fd(), number, "a ParentOnly's conversion changed its descriptor");
                Ok(ParentOnly { held: ManuallyDrop::new(converted), generation: this.generation })
            }
            Err(error) => {
                registered.remove(&number);
                Err(error)
            }
        }
    }
}

impl<T: AsRawFd + Unpin> ParentOnly<T> {
    /// The stream held, to poll (an error in a child forked since it was made).
    fn pinned(self: Pin<&mut Self>) -> std::io::Result<Pin<&mut T>> {
        self.get_mut().get_mut().map(Pin::new).ok_or_else(forked_away)
    }
}

/// A stream only this process keeps reads as the stream it holds...
impl<T: AsRawFd + tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for ParentOnly<T> {
    fn poll_read(self: Pin<&mut Self>, context: &mut Context<'_>, buffer: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        self.pinned()?.poll_read(context, buffer)
    }
}

/// ...and is written to as it.
impl<T: AsRawFd + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for ParentOnly<T> {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        self.pinned()?.poll_write(context, data)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.pinned()?.poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.pinned()?.poll_shutdown(context)
    }
}

impl<T: AsRawFd> Drop for ParentOnly<T> {
    fn drop(&mut self) {
        let mut registered = registry();
        if self.get().is_some() {
            registered.remove(&self.held.as_raw_fd());
            // SAFETY: dropped once, here; `held` is not used again.
            unsafe { ManuallyDrop::drop(&mut self.held) };
        }
    }
}

/// The error of a use of a [`ParentOnly`] descriptor in a child forked since it was made.
pub fn forked_away() -> std::io::Error {
    std::io::Error::other("the descriptor is the runtime's, in the process this one was forked from")
}

extern "C" fn before_fork() {
    let held = registry();
    HELD_ACROSS_FORK.with(|slot| *slot.borrow_mut() = Some(held));
}

extern "C" fn after_fork_in_parent() {
    HELD_ACROSS_FORK.with(|slot| drop(slot.borrow_mut().take()));
}

extern "C" fn after_fork_in_child() {
    HELD_ACROSS_FORK.with(|slot| {
        if let Some(mut registered) = slot.borrow_mut().take() {
            for fd in registered.iter() {
                // SAFETY: the descriptor was registered, so open and the runtime's, at the fork;
                // its holder in this child will neither use nor close it again (rule 2).
                unsafe { libc::close(*fd) };
            }
            registered.clear();
            GENERATION.fetch_add(1, Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ParentOnly<std::fs::File> {
        fn as_raw_fd_for_test(&self) -> RawFd {
            self.get().expect("in the process that made it").as_raw_fd()
        }
    }

    fn is_open(fd: RawFd) -> bool {
        // SAFETY: F_GETFD reads the descriptor's flags and touches no memory.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    #[test]
    fn a_forked_child_closes_what_only_the_parent_keeps_and_nothing_else() {
        let kept = ParentOnly::new(std::fs::File::open("/dev/null").expect("open"));
        let shared = std::fs::File::open("/dev/null").expect("open");
        let (kept_fd, shared_fd) = (kept.as_raw_fd_for_test(), shared.as_raw_fd());
        // SAFETY: the child only checks descriptors and exits with _exit, calling nothing that
        // another thread of the test harness could hold a lock of.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = if !is_open(kept_fd) && is_open(shared_fd) { 0 } else { 1 };
            // SAFETY: ends the child without running the harness's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child saw the parent's descriptor open, or the shared one closed");
        assert!(is_open(kept_fd), "the parent's descriptor was closed");
    }

    #[test]
    fn a_holder_made_before_a_fork_neither_gives_nor_closes_its_number_in_the_child() {
        let kept = ParentOnly::new(std::fs::File::open("/dev/null").expect("open"));
        let fd = kept.as_raw_fd_for_test();
        // SAFETY: as in the test above; the child's system calls take no lock of the harness's
        // threads (glibc readies its allocator's for the child at fork).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // The number, closed by the handler, given to another file.
            let other = std::fs::File::open("/dev/zero").expect("open");
            // SAFETY: dup2 onto a number this child does not hold.
            let reused = unsafe { libc::dup2(other.as_raw_fd(), fd) } == fd;
            let gives_nothing = kept.get().is_none();
            drop(kept);
            let code = if reused && gives_nothing && is_open(fd) { 0 } else { 1 };
            // SAFETY: ends the child without running the harness's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the old holder gave its number, or closed its new file");
        assert!(kept.get().is_some(), "the parent's holder lost its descriptor");
    }

    #[test]
    fn a_descriptor_held_as_another_type_stays_the_parents_alone() {
        let kept = ParentOnly::new(std::fs::File::open("/dev/null").expect("open"));
        let fd = kept.as_raw_fd_for_test();
        let converted = kept.try_map(|file| Ok(std::os::fd::OwnedFd::from(file))).expect("converted");
        assert_eq!(converted.get().map(AsRawFd::as_raw_fd), Some(fd));
        // SAFETY: as in the first test.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = if is_open(fd) { 1 } else { 0 };
            // SAFETY: ends the child without running the harness's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child kept the converted descriptor");
        let failed = ParentOnly::new(std::fs::File::open("/dev/null").expect("open"));
        let number = failed.as_raw_fd_for_test();
        // The conversion fails and leaves the descriptor open (as no real one would), so that
        // no other test's file takes its number before the check.
        let error = failed.try_map(|file| -> std::io::Result<std::fs::File> {
            std::mem::forget(file);
            Err(std::io::Error::other("conversion failed"))
        });
        assert!(error.is_err());
        assert!(!registry().contains(&number), "a failed conversion left its number registered");
        // SAFETY: the descriptor the conversion let go of, closed once.
        unsafe { libc::close(number) };
    }

    #[test]
    fn a_fork_while_a_descriptor_is_being_made_gives_the_child_no_copy() {
        use std::sync::atomic::{AtomicBool, AtomicI32};
        static MAKING: AtomicBool = AtomicBool::new(false);
        static MADE: AtomicI32 = AtomicI32::new(-1);
        let maker = std::thread::spawn(|| {
            ParentOnly::make(|| {
                MAKING.store(true, Ordering::SeqCst);
                let file = std::fs::File::open("/dev/null")?;
                MADE.store(file.as_raw_fd(), Ordering::SeqCst);
                // Made, not yet registered: a fork now would copy it.
                std::thread::sleep(std::time::Duration::from_millis(100));
                Ok(file)
            })
            .expect("made")
        });
        while !MAKING.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // SAFETY: as in the first test.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let fd = MADE.load(Ordering::SeqCst);
            let code = if fd >= 0 && !is_open(fd) { 0 } else { 1 };
            // SAFETY: ends the child without running the harness's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        let made = maker.join().expect("the maker");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child got a copy of the descriptor being made");
        assert!(made.get().is_some());
    }
}
