//! The control socket: a Unix stream socket (mode 0600, so root only) on which `serve` answers
//! one single-line request per connection with text, and `l2san ctl`, its client.
//!
//! Requests: `stats` (a table of the counters), `metrics` (the Prometheus text of
//! `--metrics`), `reload` (read the configuration again and serve it, as SIGHUP does; the
//! reply says what changed). A reply that starts with `error: ` is a refusal.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::cli::CtlArgs;
use crate::metrics::{self, Sources};
use crate::Error;

/// A `reload` request for the main loop, which owns the running configuration; it answers
/// with what changed, or why nothing did.
pub struct ReloadRequest {
    pub reply: Sender<Result<String, String>>,
}

/// How long `reload` waits for the main loop (which opens images: it can take a moment).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest request line read.
const MAX_REQUEST: u64 = 256;
const TIMEOUT: Duration = Duration::from_secs(2);

/// The bound control socket; its file is removed on drop (best effort: after `--user` the
/// directory may no longer be writable, and the next start removes the stale file).
pub struct CtlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for CtlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the control socket at `path`, mode 0600. Never fails the service: a missing
/// directory, another server on the socket or a refused bind logs a warning and gives `None`.
pub fn bind(path: &Path) -> Option<CtlSocket> {
    if path.as_os_str().is_empty() {
        return None;
    }
    let warn = |why: String| {
        tracing::warn!(
            "no control socket at {}: {why}; `l2san ctl` will not reach this server (--ctl-socket PATH picks another)",
            path.display()
        );
    };
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            warn(format!("{} is not a directory", dir.display()));
            return None;
        }
        _ => {}
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            warn("a file that is not a socket is in the way".into());
            return None;
        }
        if UnixStream::connect(path).is_ok() {
            warn("another server answers on it".into());
            return None;
        }
        // A stale socket of a server that is gone.
        let _ = std::fs::remove_file(path);
    }
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) => {
            warn(e.to_string());
            return None;
        }
    };
    let socket = CtlSocket {
        listener,
        path: path.to_path_buf(),
    };
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        warn(format!("cannot make it mode 0600: {e}"));
        return None;
    }
    tracing::info!("control socket at {} (l2san ctl stats)", path.display());
    Some(socket)
}

/// Answers requests on `socket` until the process ends.
pub fn spawn(
    socket: &CtlSocket,
    sources: Arc<Sources>,
    reload: Sender<ReloadRequest>,
) -> io::Result<()> {
    let listener = socket.listener.try_clone()?;
    std::thread::Builder::new()
        .name("l2san-ctl".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = answer(s, &sources, &reload) {
                            tracing::debug!("ctl: a request failed: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::debug!("ctl: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map(|_| ())
}

fn answer(
    mut stream: UnixStream,
    sources: &Sources,
    reload: &Sender<ReloadRequest>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let reply = reply(line.trim(), sources, reload);
    stream.write_all(reply.as_bytes())?;
    stream.flush()
}

fn reply(request: &str, sources: &Sources, reload: &Sender<ReloadRequest>) -> String {
    match request {
        "stats" => metrics::table(sources),
        "metrics" => metrics::collect(sources).render(),
        "reload" => {
            let (tx, rx) = mpsc::channel();
            if reload.send(ReloadRequest { reply: tx }).is_err() {
                return "error: the server is stopping\n".into();
            }
            match rx.recv_timeout(RELOAD_TIMEOUT) {
                Ok(Ok(done)) => done,
                Ok(Err(why)) => format!("error: {}\n", why.trim_end()),
                Err(_) => "error: no answer from the server within 30 s\n".into(),
            }
        }
        other => format!(
            "error: unknown request '{}'; the requests are stats, metrics and reload\n",
            other.escape_debug()
        ),
    }
}

/// `l2san ctl`: sends one request, prints the reply.
pub fn run(args: CtlArgs) -> Result<ExitCode, Error> {
    let path = &args.socket;
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "cannot connect to {}: is `l2san serve` running with this --ctl-socket, and are you root?",
            path.display()
        )
    })?;
    stream
        .set_read_timeout(Some(RELOAD_TIMEOUT + Duration::from_secs(10)))
        .context("setting a timeout")?;
    stream
        .write_all(format!("{}\n", args.command).as_bytes())
        .context("sending the request")?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .context("reading the reply")?;
    if let Some(e) = reply.strip_prefix("error: ") {
        return Err(anyhow!("{}", e.trim_end()).into());
    }
    print!("{reply}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_goes_to_the_main_loop_and_stats_are_answered_over_the_socket() {
        let dir = std::env::temp_dir().join(format!("l2san-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        let socket = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sources = Arc::new(Sources {
            interfaces: Vec::new(),
            flush: metrics::FlushStats::default(),
        });
        let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>();
        spawn(&socket, sources, reload_tx).unwrap();
        // The "main loop": refuses the first reload, accepts the second.
        std::thread::spawn(move || {
            let first = reload_rx.recv().unwrap();
            first.reply.send(Err("bad line 3".into())).unwrap();
            let second = reload_rx.recv().unwrap();
            second
                .reply
                .send(Ok("eth0: AoE added e1.2\n".into()))
                .unwrap();
        });
        let ask = |req: &str| {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut r = String::new();
            s.read_to_string(&mut r).unwrap();
            r
        };
        assert_eq!(ask("reload\n"), "error: bad line 3\n");
        assert_eq!(ask("reload\n"), "eth0: AoE added e1.2\n");
        assert!(ask("stats\n").contains("image flushes 0"));
        assert!(ask("bogus\n").starts_with("error: unknown request 'bogus'"));
        // A second server does not steal the socket.
        assert!(bind(&path).is_none());
        drop(socket);
        assert!(!path.exists());
        // A missing directory is a warning, not a failure.
        assert!(bind(&dir.join("no/such/dir.sock")).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
