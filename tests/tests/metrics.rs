//! Metrics and the control socket: l2san serves e0.0 on a veth end inside a namespace with
//! `--metrics 127.0.0.1:9560 --ctl-socket <run dir>/ctl.sock`; the test sends a known number
//! of AoE READs and WRITEs through a raw socket on the other end, then
//!
//! - fetches `/metrics` over HTTP from a thread that joined the namespace, parses the
//!   Prometheus text (format 0.0.4) with `openmetrics-parser` and checks that the counters
//!   match the traffic, that every sample has a `# TYPE`, and that other paths get 404;
//! - runs `l2san ctl stats` and checks the export's line, and `l2san ctl reload`, which
//!   reads the same flags again and reports no change.
//!
//! l2san only: under `L2SAN_E2E_TARGET=vblade` it says so and does not run.

#![forbid(unsafe_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use l2san_aoe::initiator::{AtaRequest, Response, ResponseBody};
use l2san_common::io::sys::netns::in_netns;
use l2san_rig::fixture::{ata_frame, VethOpts, VethPair};
use l2san_rig::rawsock::RawSocket;
use l2san_rig::rig::{self, Netns, Run, Target};
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{HistogramValue, MetricsExposition, PrometheusType, PrometheusValue};

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
fn http_get(ns: &Netns, path: &str) -> Result<(String, String)> {
    in_netns(&ns.path(), || -> Result<(String, String)> {
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
    .context("cannot join the namespace")?
}

type Scrape = MetricsExposition<PrometheusType, PrometheusValue>;

/// The sample of family `name` whose labels are exactly `labels`.
fn sample<'a>(m: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Result<&'a PrometheusValue> {
    let family = m
        .families
        .get(name)
        .with_context(|| format!("no family {name}"))?;
    for s in family.iter_samples() {
        let set = s
            .get_labelset()
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        if set.iter().count() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        {
            return Ok(&s.value);
        }
    }
    bail!("no sample {name}{labels:?}")
}

/// The value of a counter or gauge sample.
fn number(m: &Scrape, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    match sample(m, name, labels)? {
        PrometheusValue::Counter(c) => Ok(c.value.as_f64()),
        PrometheusValue::Gauge(g) => Ok(g.as_f64()),
        other => bail!("{name}{labels:?} is neither a counter nor a gauge: {other:?}"),
    }
}

fn histogram<'a>(m: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Result<&'a HistogramValue> {
    match sample(m, name, labels)? {
        PrometheusValue::Histogram(h) => Ok(h),
        other => bail!("{name}{labels:?} is not a histogram: {other:?}"),
    }
}

fn is(m: &Scrape, name: &str, kind: PrometheusType) -> bool {
    m.families.get(name).map(|f| &f.family_type) == Some(&kind)
}

#[test]
fn metrics_and_ctl_count_the_traffic() {
    rig::e2e_l2san(
        "metrics",
        "vblade has no metrics and no control socket",
        |run: &Run| {
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

            let (status, body) = http_get(&ns, "/metrics")?;
            ensure!(status.starts_with("HTTP/1.0 200"), "status {status:?}");
            let m = parse_prometheus(&body).map_err(|e| anyhow::anyhow!("parsing: {e}\n{body}"))?;
            // A sample with no # TYPE line before it would be a family of unknown type.
            for (name, family) in &m.families {
                ensure!(
                    family.family_type != PrometheusType::Unknown,
                    "{name} has no # TYPE line"
                );
            }
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
                let got = number(&m, name, labels)?;
                ensure!(got == want as f64, "{name}: {got}, expected {want}\n{body}");
                ensure!(
                    is(&m, name, PrometheusType::Counter),
                    "{name} is not typed counter"
                );
            }
            let requests = number(&m, "l2san_aoe_export_requests_total", &export)?;
            ensure!(requests >= (READS + WRITES) as f64, "requests {requests}");
            let frames = number(
                &m,
                "l2san_worker_frames_total",
                &[("iface", "a"), ("worker", "0")],
            )?;
            ensure!(frames >= (READS + WRITES) as f64, "worker frames {frames}");
            let tx = number(
                &m,
                "l2san_worker_tx_frames_total",
                &[("iface", "a"), ("worker", "0")],
            )?;
            ensure!(tx >= (READS + WRITES) as f64, "worker tx frames {tx}");
            number(&m, "l2san_image_flushes_total", &[])?;

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
                let got = number(&m, name, &cl)?;
                ensure!(got == want as f64, "{name}: {got}, expected {want}\n{body}");
            }
            // Latency histograms: one observation per ATA command, cumulative buckets.
            for (name, labels) in [
                ("l2san_aoe_client_latency_seconds", &cl[..]),
                ("l2san_aoe_export_latency_seconds", &export[..]),
            ] {
                ensure!(
                    is(&m, name, PrometheusType::Histogram),
                    "{name} is not a histogram"
                );
                let h = histogram(&m, name, labels)?;
                let count = h.count.with_context(|| format!("{name} has no _count"))?;
                ensure!(count == READS + WRITES, "{name}_count {count}");
                let inf = h.buckets.last().context("no buckets")?;
                ensure!(inf.upper_bound == f64::INFINITY && inf.count.as_f64() == count as f64);
                let low = h.buckets.first().context("no buckets")?;
                ensure!(
                    low.upper_bound == 0.00001,
                    "first bucket le={}",
                    low.upper_bound
                );
                ensure!(
                    low.count.as_f64() <= count as f64,
                    "buckets must be cumulative"
                );
                let sum = h
                    .sum
                    .with_context(|| format!("{name} has no _sum"))?
                    .as_f64();
                ensure!(sum > 0.0 && sum < count as f64, "{name}_sum {sum} s");
            }
            let refused = number(
                &m,
                "l2san_aoe_client_refused_total",
                &[cl[0], cl[1], ("reason", "not_allowed")],
            )?;
            ensure!(refused == 0.0);

            let (status, _) = http_get(&ns, "/nope")?;
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
        },
    );
}
