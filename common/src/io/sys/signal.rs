//! Termination signals as a flag the workers poll: SIGINT, SIGTERM (stop) and SIGHUP (noted
//! for the reload work to come).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Route SIGINT and SIGTERM to [`stop_requested`]. Call once, before starting workers.
pub fn install_stop_handler() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain old data, so zeroed is a valid start; the handler only
        // stores to an atomic, which is async-signal-safe; no SA_RESTART, so a blocking poll
        // in a worker returns EINTR and sees the flag at once.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
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

/// Ask every worker to stop, as a signal would.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}
