//! Signals as flags that the workers and the main loop poll: SIGINT and SIGTERM (stop),
//! SIGHUP (reload the configuration).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hangup(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    HANGUP.store(true, Ordering::SeqCst);
}

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Route SIGINT and SIGTERM to [`stop_requested`], SIGHUP to [`take_hangup`]. Call once,
/// before starting workers.
pub fn install_stop_handler() -> std::io::Result<()> {
    let handlers: [(libc::c_int, extern "C" fn(libc::c_int)); 3] = [
        (libc::SIGINT, on_signal),
        (libc::SIGTERM, on_signal),
        (libc::SIGHUP, on_hangup),
    ];
    for (sig, handler) in handlers {
        // SAFETY: sigaction is plain old data, so zeroed is a valid start; the handler only
        // stores to an atomic, which is async-signal-safe; no SA_RESTART, so a blocking poll
        // in a worker returns EINTR and sees the flag at once.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived (or [`request_stop`] was called).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Whether SIGHUP arrived since the last call.
pub fn take_hangup() -> bool {
    HANGUP.swap(false, Ordering::SeqCst)
}

/// Ask every worker to stop, as a signal would.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}
