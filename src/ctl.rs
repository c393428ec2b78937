//! The control socket: a Unix stream socket (mode 0600, so root only) on which `serve` answers
//! one single-line request per connection with text, and `l2san ctl`, its client.
//!
//! Requests: `stats` (a table of the counters), `metrics` (the Prometheus text of
//! `--metrics`), `reload` (read the configuration again and serve it, as SIGHUP does; the
//! reply says what changed), and the copy-on-write overlays: `overlay list`,
//! `overlay reset <client> [<export>]`, `overlay commit <client> <new image> [<export>]`.
//! A reply that starts with `error: ` is a refusal. `commit` streams `progress <done>
//! <total>` lines before its last line, which `l2san ctl` draws as a progress bar.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use l2san_common::store::{ClientKey, OverlaySet};
use std::fmt::Write as _;

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
    let words: Vec<&str> = line.split_whitespace().collect();
    if let ["overlay", "commit", rest @ ..] = words.as_slice() {
        let reply = commit(rest, sources, &mut stream);
        stream.write_all(reply.as_bytes())?;
        return stream.flush();
    }
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
        "overlay list" => overlay_list(sources),
        other => match other.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["overlay", "reset", rest @ ..] => overlay_reset(rest, sources),
            _ => format!(
                "error: unknown request '{}'; the requests are stats, metrics, reload, \
                 overlay list, overlay reset and overlay commit\n",
                other.escape_debug()
            ),
        },
    }
}

/// Every overlay of every overlay export, a line each.
fn overlay_list(sources: &Sources) -> String {
    let sets = sources.overlays();
    if sets.is_empty() {
        return "no overlay exports\n".into();
    }
    let mut rows = vec![[
        "EXPORT",
        "CLIENT",
        "BLOCKS",
        "WRITTEN-MIB",
        "ALLOCATED-MIB",
        "CREATED",
        "LAST-WRITE",
    ]
    .map(String::from)];
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string()
    };
    let mib = |b: u64| format!("{:.1}", b as f64 / (1 << 20) as f64);
    for (export, set) in &sets {
        for o in set.list() {
            rows.push([
                export.clone(),
                o.client.to_string(),
                o.blocks_written.to_string(),
                mib(o.blocks_written * l2san_common::store::overlay::BLOCK_SIZE),
                mib(o.bytes_allocated),
                secs(o.created),
                secs(o.last_write),
            ]);
        }
    }
    if rows.len() == 1 {
        return format!("no overlays yet in {} overlay export(s)\n", sets.len());
    }
    let mut out = String::new();
    metrics::push_table(&mut out, &rows);
    out
}

/// Overlay exports by name.
type Sets = Vec<(String, Arc<OverlaySet>)>;

/// The client `client`, and the overlay exports (all, or `export`) where it has an overlay.
fn pick(
    client: &str,
    export: Option<&str>,
    sources: &Sources,
) -> Result<(ClientKey, Sets), String> {
    let key: ClientKey = client.parse().map_err(|e| format!("{e}"))?;
    let sets: Vec<_> = sources
        .overlays()
        .into_iter()
        .filter(|(name, set)| {
            export.is_none_or(|e| e == name) && set.list().iter().any(|o| o.client == key)
        })
        .collect();
    if sets.is_empty() {
        return Err(match export {
            Some(e) => format!("{key} has no overlay in export \"{e}\" (overlay list shows them)"),
            None => format!("{key} has no overlay (overlay list shows them)"),
        });
    }
    Ok((key, sets))
}

/// `overlay reset <client> [<export>]`: discard the client's overlay(s).
fn overlay_reset(args: &[&str], sources: &Sources) -> String {
    let (client, export) = match args {
        [c] => (*c, None),
        [c, e] => (*c, Some(*e)),
        _ => return "error: overlay reset <client> [<export>]\n".into(),
    };
    let (key, sets) = match pick(client, export, sources) {
        Ok(p) => p,
        Err(e) => return format!("error: {e}\n"),
    };
    let mut out = String::new();
    for (name, set) in sets {
        match set.reset(&key) {
            Ok(_) => {
                tracing::info!("overlay of {key} in export \"{name}\" reset by ctl");
                let _ = writeln!(out, "reset {key} in export \"{name}\"");
            }
            Err(e) => return format!("error: {e}\n"),
        }
    }
    out
}

/// `overlay commit <client> <new image> [<export>]`: write base + overlay into a new image,
/// sending `progress` lines as it goes.
fn commit(args: &[&str], sources: &Sources, stream: &mut UnixStream) -> String {
    let (client, path, export) = match args {
        [c, p] => (*c, *p, None),
        [c, p, e] => (*c, *p, Some(*e)),
        _ => return "error: overlay commit <client> <new image> [<export>]\n".into(),
    };
    let path = Path::new(path);
    if !path.is_absolute() {
        return format!(
            "error: {} is not an absolute path; the server resolves it\n",
            path.display()
        );
    }
    let (key, sets) = match pick(client, export, sources) {
        Ok(p) => p,
        Err(e) => return format!("error: {e}\n"),
    };
    let [(name, set)] = sets.as_slice() else {
        let names: Vec<&str> = sets.iter().map(|(n, _)| n.as_str()).collect();
        return format!(
            "error: {key} has overlays in {}; name the export: overlay commit {client} {} <export>\n",
            names.join(", "),
            path.display()
        );
    };
    let mut last = 0;
    let mut send = |done: u64, total: u64| {
        // About a hundred lines, whatever the size.
        if done == total || done.saturating_sub(last) >= total / 100 {
            last = done;
            let _ = stream.write_all(format!("progress {done} {total}\n").as_bytes());
        }
    };
    match set.commit(&key, path, &mut send) {
        Ok(()) => {
            tracing::info!(
                "overlay of {key} in export \"{name}\" committed to {}",
                path.display()
            );
            format!(
                "committed {key} of export \"{name}\" to {} ({} bytes); the base and the overlay are unchanged\n",
                path.display(),
                set.len_bytes()
            )
        }
        Err(e) => format!("error: {e}\n"),
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
    let mut words = vec![args.command.clone()];
    for (i, a) in args.args.iter().enumerate() {
        // commit's image path is the server's to resolve: make it absolute here.
        let is_path =
            args.command == "overlay" && args.args.first().is_some_and(|c| c == "commit") && i == 2;
        let p = Path::new(a);
        if is_path && p.is_relative() {
            let cwd = std::env::current_dir().context("the current directory")?;
            words.push(cwd.join(p).display().to_string());
        } else {
            words.push(a.clone());
        }
    }
    stream
        .write_all(format!("{}\n", words.join(" ")).as_bytes())
        .context("sending the request")?;
    let mut reply = String::new();
    let mut bar = false;
    for line in BufReader::new(&stream).lines() {
        let line = line.context("reading the reply")?;
        if let Some(p) = line.strip_prefix("progress ") {
            let mut n = p.split_whitespace().filter_map(|w| w.parse::<u64>().ok());
            if let (Some(done), Some(total)) = (n.next(), n.next()) {
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                let filled = (pct / 2) as usize;
                eprint!(
                    "\r[{}{}] {pct:3}%",
                    "#".repeat(filled),
                    " ".repeat(50 - filled.min(50))
                );
                bar = true;
            }
            continue;
        }
        reply.push_str(&line);
        reply.push('\n');
    }
    if bar {
        eprintln!();
    }
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
            overlays: Default::default(),
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
