//! A box's rules (`boxlite_protocol::network` says what they do), loaded into its network
//! namespace with libnftables, the library `nft` itself is made of: a context made in the
//! namespace talks to it (~0.2 ms), where running `nft` would cost an exec (~3.5 ms, which a
//! hundred boxes made at once pay on two cores). The library is found at run time, so a host
//! without it runs loopback-only boxes and names the package for the rest. A runtime that runs
//! as an ordinary user may not enter a box's namespace: its boxes' shims run `nft` instead.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use boxlite_protocol::network::ruleset;

/// How boxes' rules get into their namespaces on this host.
#[derive(Debug, Clone)]
pub enum Rules {
    /// The runtime loads them with libnftables, from a thread that enters the namespace.
    Library(Arc<RuleLoader>),
    /// Each box's shim runs `nft`, at this path (`boxlite_protocol::LOAD_RULES_WITH_ARGUMENT`).
    Command(PathBuf),
}

/// Where Debian and other distributions install `nft`.
const NFT_PATHS: &[&str] = &["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"];

impl Rules {
    /// The way for a runtime that runs as root, or (`rootless`) as an ordinary user; the error
    /// says what is missing.
    pub fn find(rootless: bool) -> Result<Self, String> {
        if !rootless {
            return RuleLoader::open().map(|loader| Self::Library(Arc::new(loader)));
        }
        NFT_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|path| path.is_file())
            .map(Self::Command)
            .ok_or_else(|| format!("needs nft, found in none of {} (Debian/Ubuntu: apt-get install nftables)", NFT_PATHS.join(", ")))
    }

    /// Loads the rules into the namespace of the box whose init is `pid`, if the runtime is the
    /// one that loads them. Blocking.
    pub fn load_into(&self, pid: i32) -> crate::Result<()> {
        let Self::Library(loader) = self else { return Ok(()) };
        let namespace = super::open_namespace(pid)?;
        super::in_namespace(&namespace, || loader.load_here())
            .map_err(|error| crate::Error::Network(format!("failed to enter the network namespace of box init {pid}: {error}")))?
            .map_err(crate::Error::Network)
    }
}

/// The library's file, from Debian's `libnftables1` (which `nftables` depends on).
const LIBRARY: &str = "libnftables.so.1";
/// `NFT_CTX_DEFAULT` of <nftables/libnftables.h>.
const CTX_DEFAULT: u32 = 0;

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxSet = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// libnftables, opened once per runtime.
pub struct RuleLoader {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxSet,
    buffer_error: CtxSet,
    error_buffer: CtxGetBuffer,
    run_cmd: RunCmd,
    /// One load at a time: the library's thread safety is not documented.
    serial: Mutex<()>,
    /// Keeps the functions above mapped.
    _library: libloading::Library,
}

impl std::fmt::Debug for RuleLoader {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("RuleLoader")
    }
}

impl RuleLoader {
    /// Opens the library; the error says what is missing.
    pub fn open() -> Result<Self, String> {
        let missing = |error: libloading::Error| format!("cannot load {LIBRARY} (Debian/Ubuntu: apt-get install nftables): {error}");
        // SAFETY: loading libnftables runs its initialisers, which only set up its own state.
        let library = unsafe { libloading::Library::new(LIBRARY) }.map_err(missing)?;
        // SAFETY: each symbol is read with the type <nftables/libnftables.h> declares for it.
        unsafe {
            Ok(Self {
                ctx_new: *library.get::<CtxNew>(b"nft_ctx_new\0").map_err(missing)?,
                ctx_free: *library.get::<CtxFree>(b"nft_ctx_free\0").map_err(missing)?,
                buffer_output: *library.get::<CtxSet>(b"nft_ctx_buffer_output\0").map_err(missing)?,
                buffer_error: *library.get::<CtxSet>(b"nft_ctx_buffer_error\0").map_err(missing)?,
                error_buffer: *library.get::<CtxGetBuffer>(b"nft_ctx_get_error_buffer\0").map_err(missing)?,
                run_cmd: *library.get::<RunCmd>(b"nft_run_cmd_from_buffer\0").map_err(missing)?,
                serial: Mutex::new(()),
                _library: library,
            })
        }
    }

    /// Loads the box's ruleset into the calling thread's network namespace (a context talks to
    /// the namespace it was made in). Blocking.
    pub fn load_here(&self) -> Result<(), String> {
        let ruleset = CString::new(ruleset()).map_err(|error| error.to_string())?;
        let _serial = crate::lock(&self.serial);
        // SAFETY: the context is made, used and freed here only; the buffers keep the library
        // from writing to this process's stdout and stderr, and the error text is copied out
        // before the context is freed.
        unsafe {
            let context = (self.ctx_new)(CTX_DEFAULT);
            if context.is_null() {
                return Err("libnftables could not make a context".to_string());
            }
            (self.buffer_output)(context);
            (self.buffer_error)(context);
            let code = (self.run_cmd)(context, ruleset.as_ptr());
            let message = if code == 0 {
                None
            } else {
                let error = (self.error_buffer)(context);
                Some(if error.is_null() { format!("error {code}") } else { CStr::from_ptr(error).to_string_lossy().trim().to_string() })
            };
            (self.ctx_free)(context);
            message.map_or(Ok(()), |message| Err(format!("failed to load the box's network rules: {message}")))
        }
    }
}
