//! The HTTP server of `serve --metrics`: `GET /metrics` answers the exposition. One thread
//! answers one request per connection, one connection at a time, with a bounded request size
//! and read/write timeouts, so that a slow or hostile client costs at most a few seconds of
//! scraping, never the service.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::{collect, Sources};

/// Largest request head read (request line and headers).
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request, and to take the answer.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the metrics listener (before privileges are dropped: a port below 1024 needs root).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Answers scrapes on `listener` until the process ends.
pub fn spawn(listener: TcpListener, sources: Arc<Sources>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("l2san-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = answer(s, &sources) {
                            tracing::debug!("metrics: a request failed: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::debug!("metrics: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map(|_| ())
}

/// One request, one answer, then the connection is closed.
fn answer(mut stream: TcpStream, sources: &Sources) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if buf.len() >= MAX_REQUEST {
            break false;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break !buf.is_empty();
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (status, body) = if complete {
        route(&buf, sources)
    } else {
        (
            "431 Request Header Fields Too Large",
            "request too large\n".into(),
        )
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        if status.starts_with("200") {
            "text/plain; version=0.0.4; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        },
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// The status and body for a request head.
fn route(head: &[u8], sources: &Sources) -> (&'static str, String) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return ("405 Method Not Allowed", "only GET /metrics\n".into());
    }
    if path != "/metrics" {
        return ("404 Not Found", "not found; try /metrics\n".into());
    }
    ("200 OK", collect(sources).render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    use l2san_common::worker::WorkerStats;

    use crate::metrics::{table, FlushStats, IfaceSources};

    #[test]
    fn routes_only_get_metrics() {
        let sources = Sources {
            overlays: Default::default(),
            interfaces: vec![IfaceSources {
                name: "eth1".into(),
                workers: vec![Arc::new(WorkerStats::default())],
                aoe: None,
                fcoe: None,
            }],
            flush: FlushStats::default(),
        };
        sources.interfaces[0].workers[0]
            .frames
            .store(5, Ordering::Relaxed);
        let (status, body) = route(b"GET /metrics HTTP/1.0\r\n\r\n", &sources);
        assert_eq!(status, "200 OK");
        assert!(body.contains("# TYPE l2san_worker_frames_total counter\n"));
        assert!(body.contains("l2san_worker_frames_total{iface=\"eth1\",worker=\"0\"} 5\n"));
        assert!(body.contains("l2san_image_flushes_total 0\n"));
        assert_eq!(
            route(b"GET / HTTP/1.0\r\n\r\n", &sources).0,
            "404 Not Found"
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.0\r\n\r\n", &sources).0,
            "405 Method Not Allowed"
        );
        let t = table(&sources);
        assert!(t.starts_with("INTERFACE  WORKER  FRAMES"), "{t}");
        assert!(t.contains("\neth1       0            5"), "{t}");
    }
}
