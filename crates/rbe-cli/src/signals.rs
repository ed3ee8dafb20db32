//! What the signals a user or the system sends do to a run.
//!
//! - SIGINT / SIGTERM: this process's temp files are deleted and it exits 130 / 143, so an
//!   interrupted encode or decode leaves the directory as it found it.
//! - SIGPIPE: the default action (the program ends quietly), as a Unix filter should when its
//!   reader goes away (`rbe inspect big.rbe | head`). Rust ignores SIGPIPE, which would turn the
//!   next write into a panic.
//! - SIGBUS: raised when a memory-mapped input shrinks while it is read. The handler says so in
//!   one line and exits 1; the temp file of the write in progress carries this process's id, so
//!   the next run into that directory removes it.

/// Installs the behaviour above; call once, first thing in `main`.
pub fn install() {
    #[cfg(unix)]
    unix::install();
}

#[cfg(unix)]
mod unix {
    use signal_hook::consts::{SIGINT, SIGTERM};

    const SIGBUS_MESSAGE: &[u8] =
        b"error: an input file changed size while it was being read (truncated or replaced?); nothing was written\n";

    extern "C" fn on_sigbus(_: libc::c_int) {
        // Only async-signal-safe calls here: write(2) and _exit(2).
        // SAFETY: the buffer is a static byte string; fd 2 may be closed, which write reports.
        unsafe {
            libc::write(2, SIGBUS_MESSAGE.as_ptr().cast(), SIGBUS_MESSAGE.len());
            libc::_exit(1);
        }
    }

    pub fn install() {
        // SAFETY: setting a signal's disposition to the default action or to a handler that only
        // makes async-signal-safe calls; done before any other thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
        // A thread, not a handler, waits for SIGINT/SIGTERM: it may take locks and delete files.
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    let removed = rbe::format::remove_live_temps();
                    let what = if signal == SIGINT { "interrupted" } else { "terminated" };
                    if removed > 0 {
                        eprintln!("{what}: removed {removed} unfinished output file(s)");
                    } else {
                        eprintln!("{what}");
                    }
                    std::process::exit(128 + signal);
                }
            });
        }
    }
}
