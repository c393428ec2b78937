//! Metrics and the control socket: l2san serves e0.0 on a veth end inside a namespace with
//! `--metrics 127.0.0.1:9560 --ctl-socket <run dir>/ctl.sock`; the test sends a known number
//! of AoE READs and WRITEs through a raw socket on the other end, then
//!
//! - fetches `/metrics` over HTTP from a thread that joined the namespace, parses the
//!   Prometheus text (format 0.0.4) and checks that the counters match the traffic, that
//!   every sample has a `# TYPE`, and that other paths get 404;
//! - runs `l2san ctl stats` and checks the export's line, and `l2san ctl reload`, which
//!   reads the same flags again and reports no change.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use l2san_aoe::initiator::{AtaRequest, Response, ResponseBody};
use l2san_rig::fixture::{ata_frame, VethOpts, VethPair};
use l2san_rig::rawsock::RawSocket;
use l2san_rig::rig::{self, Netns, Run, Target};

const ETHERTYPE_AOE: u16 = 0x88a2;
const SECTORS: usize = 2048;
const SECTOR: usize = 512;
const READS: u64 = 5;
const READ_COUNT: u8 = 2;
const WRITES: u64 = 3;
const METRICS_ADDR: &str = "127.0.0.1:9560";

/// Sends `frame` and waits for the reply with `tag`; returns its ATA status.
fn exchange(sock: &RawSocket, frame: &[u8], tag: u32) -> Result<u8> {
    sock.send(frame)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(r) = sock.recv(left)? else {
            bail!("no reply to tag {tag:#x}");
        };
        if let Some(Response {
            header,
            body: ResponseBody::Ata(a),
            ..
        }) = Response::parse(&r)
        {
            if header.tag == tag {
                return Ok(a.status);
            }
        }
    }
}

/// `GET path` over HTTP/1.0 from a thread inside namespace `ns`: the status line and body.
fn http_get(ns: &str, path: &str) -> Result<(String, String)> {
    let ns_path = format!("/var/run/netns/{ns}");
    let path = path.to_string();
    std::thread::spawn(move || -> Result<(String, String)> {
        let f = File::open(&ns_path)?;
        // SAFETY: setns takes a valid descriptor (owned by `f`, alive across the call) and a
        // flag; it changes only this thread's network namespace, and the thread ends here.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setns");
        }
        let mut s = TcpStream::connect(METRICS_ADDR).context("connecting to the metrics port")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: l2san\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("no end of the HTTP head")?;
        Ok((
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        ))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the HTTP thread panicked"))?
}

/// A parsed exposition: `(name, labels) → value`, and `name → type`.
#[derive(Debug, Default)]
struct Exposition {
    samples: HashMap<(String, Vec<(String, String)>), f64>,
    types: HashMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Result<Exposition> {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').context("bad TYPE line")?;
                e.types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').context("no value")?;
            let value: f64 = value
                .parse()
                .with_context(|| format!("bad value in {line:?}"))?;
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), Vec::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').context("no closing brace")?;
                    (name.to_string(), parse_labels(body)?)
                }
            };
            // A histogram's samples are <name>_bucket, _sum and _count.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|base| e.types.get(*base).map(String::as_str) == Some("histogram"))
                .unwrap_or(&name);
            ensure!(
                e.types.contains_key(family),
                "sample {name} comes before its # TYPE line"
            );
            e.samples.insert((name, labels), value);
        }
        Ok(e)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        self.samples
            .get(&(name.to_string(), l))
            .copied()
            .with_context(|| format!("no sample {name}{labels:?}"))
    }
}

/// `a="x",b="y\"z"` into sorted pairs, escapes undone.
fn parse_labels(body: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        ensure!(
            chars.next() == Some('"'),
            "label {key} has no opening quote"
        );
        let mut value = String::new();
        loop {
            match chars.next().context("unterminated label value")? {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => bail!("dangling backslash"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.trim().to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn label_parser_undoes_escapes() {
    let l = parse_labels(r#"b="x\"y\\z\n",a="1""#).unwrap();
    assert_eq!(
        l,
        vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "x\"y\\z\n".to_string())
        ]
    );
}

#[test]
fn metrics_and_ctl_count_the_traffic() {
    rig::e2e("metrics", |run: &Run| {
        let image = run.path("disk.img");
        fs::write(&image, vec![0x11u8; SECTORS * SECTOR])?;
        let ns = Netns::new()?;
        let veth = VethPair::create(&ns, VethOpts::default())?;
        ns.run("ip", ["link", "set", "dev", "lo", "up"])?;
        let (them, us) = (veth.them, veth.us);
        let sock = veth.socket(&ns, ETHERTYPE_AOE)?;
        let tap = veth.tap(1500);
        let ctl = run.path("ctl.sock");
        let bin = rig::l2san_bin()?;
        let args: Vec<String> = [
            "--aoe",
            &format!("0.0={}", image.display()),
            "--workers",
            "1",
            "--metrics",
            METRICS_ADDR,
            "--ctl-socket",
            ctl.to_str().context("run dir is not UTF-8")?,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut target = Target::l2san_args(&ns, &tap, &bin, &args, &run.path("target.log"))?;

        let mut tag = 0x4d45_0000u32;
        for i in 0..READS {
            tag += 1;
            let read = AtaRequest::Read {
                lba: i * 8,
                sector_count: READ_COUNT,
                lba48: true,
            };
            let f = ata_frame(them, us, tag, read, &[]);
            ensure!(exchange(&sock, &f, tag)? == 0x40, "READ {i} failed");
        }
        for i in 0..WRITES {
            tag += 1;
            let write = AtaRequest::Write {
                lba: 100 + i,
                sector_count: 1,
                lba48: true,
            };
            let f = ata_frame(them, us, tag, write, &[0x22; SECTOR]);
            ensure!(exchange(&sock, &f, tag)? == 0x40, "WRITE {i} failed");
        }

        let (status, body) = http_get(ns.name(), "/metrics")?;
        ensure!(status.starts_with("HTTP/1.0 200"), "status {status:?}");
        let m = Exposition::parse(&body).with_context(|| format!("parsing:\n{body}"))?;
        let export = [("iface", "a"), ("shelf", "0"), ("slot", "0")];
        let bytes_read = READS * u64::from(READ_COUNT) * SECTOR as u64;
        for (name, labels, want) in [
            ("l2san_aoe_export_reads_total", &export[..], READS),
            ("l2san_aoe_export_writes_total", &export[..], WRITES),
            ("l2san_aoe_export_bytes_read_total", &export[..], bytes_read),
            (
                "l2san_aoe_export_bytes_written_total",
                &export[..],
                WRITES * SECTOR as u64,
            ),
            ("l2san_aoe_export_ata_errors_total", &export[..], 0),
            ("l2san_aoe_reads_total", &export[..1], READS),
            ("l2san_aoe_writes_total", &export[..1], WRITES),
            ("l2san_aoe_bytes_read_total", &export[..1], bytes_read),
        ] {
            let got = m.get(name, labels)?;
            ensure!(got == want as f64, "{name}: {got}, expected {want}\n{body}");
            ensure!(
                m.types.get(name).map(String::as_str) == Some("counter"),
                "{name} is not typed counter"
            );
        }
        let requests = m.get("l2san_aoe_export_requests_total", &export)?;
        ensure!(requests >= (READS + WRITES) as f64, "requests {requests}");
        let frames = m.get(
            "l2san_worker_frames_total",
            &[("iface", "a"), ("worker", "0")],
        )?;
        ensure!(frames >= (READS + WRITES) as f64, "worker frames {frames}");
        let tx = m.get(
            "l2san_worker_tx_frames_total",
            &[("iface", "a"), ("worker", "0")],
        )?;
        ensure!(tx >= (READS + WRITES) as f64, "worker tx frames {tx}");
        m.get("l2san_image_flushes_total", &[])?;

        // The raw socket's MAC is the one client, with exactly the traffic sent.
        let client = us.map(|b| format!("{b:02x}")).join(":");
        let cl = [("iface", "a"), ("client", client.as_str())];
        for (name, want) in [
            ("l2san_aoe_client_requests_total", READS + WRITES),
            ("l2san_aoe_client_reads_total", READS),
            ("l2san_aoe_client_writes_total", WRITES),
            ("l2san_aoe_client_bytes_read_total", bytes_read),
            (
                "l2san_aoe_client_bytes_written_total",
                WRITES * SECTOR as u64,
            ),
            ("l2san_aoe_client_ata_errors_total", 0),
        ] {
            let got = m.get(name, &cl)?;
            ensure!(got == want as f64, "{name}: {got}, expected {want}\n{body}");
        }
        // Latency histograms: one observation per ATA command, cumulative buckets.
        for (name, labels) in [
            ("l2san_aoe_client_latency_seconds", &cl[..]),
            ("l2san_aoe_export_latency_seconds", &export[..]),
        ] {
            ensure!(m.types.get(name).map(String::as_str) == Some("histogram"));
            let count = m.get(&format!("{name}_count"), labels)?;
            ensure!(count == (READS + WRITES) as f64, "{name}_count {count}");
            let mut inf = labels.to_vec();
            inf.push(("le", "+Inf"));
            ensure!(m.get(&format!("{name}_bucket"), &inf)? == count);
            let mut first = labels.to_vec();
            first.push(("le", "0.00001"));
            let low = m.get(&format!("{name}_bucket"), &first)?;
            ensure!(low <= count, "buckets must be cumulative");
            let sum = m.get(&format!("{name}_sum"), labels)?;
            ensure!(sum > 0.0 && sum < count, "{name}_sum {sum} s");
        }
        let refused = m.get(
            "l2san_aoe_client_refused_total",
            &[cl[0], cl[1], ("reason", "not_allowed")],
        )?;
        ensure!(refused == 0.0);

        let (status, _) = http_get(ns.name(), "/nope")?;
        ensure!(status.starts_with("HTTP/1.0 404"), "status {status:?}");

        let out = Command::new(&bin)
            .args(["ctl", "--socket"])
            .arg(&ctl)
            .arg("stats")
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success(), "ctl stats failed: {out:?}");
        rig::report(format_args!("l2san ctl stats:\n{stdout}"));
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("e0.0"))
            .with_context(|| format!("no e0.0 line in:\n{stdout}"))?;
        let cols: Vec<&str> = line.split_whitespace().collect();
        let want = [
            "a".to_string(),
            "e0.0".to_string(),
            cols.get(2).map_or(String::new(), |s| s.to_string()),
            READS.to_string(),
            WRITES.to_string(),
            bytes_read.to_string(),
            (WRITES * SECTOR as u64).to_string(),
            "0".to_string(),
        ];
        ensure!(cols == want, "export line {line:?}, expected {want:?}");
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(client.as_str()))
            .with_context(|| format!("no client line in:\n{stdout}"))?;
        let cols: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            cols[2..8]
                == [
                    (READS + WRITES).to_string(),
                    READS.to_string(),
                    WRITES.to_string(),
                    bytes_read.to_string(),
                    (WRITES * SECTOR as u64).to_string(),
                    "0".to_string()
                ],
            "client line {line:?}"
        );

        let out = Command::new(&bin)
            .args(["ctl", "--socket"])
            .arg(&ctl)
            .arg("reload")
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && stdout == "no change\n",
            "ctl reload: {out:?}"
        );

        target.check_running()?;
        target.stop()?;
        ensure!(!ctl.exists(), "the control socket was left behind");
        Ok(())
    });
}
