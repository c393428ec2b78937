//! The whole output of the metrics, pinned byte for byte on real targets' counters.

use std::sync::atomic::Ordering;

use super::*;

use l2san_aoe::{AoeExport, LATENCY_BOUNDS};
use l2san_common::store::{OverlayOptions, OverlayPolicy};
use l2san_common::test_utils::capture;
use l2san_common::{Durability, EtherType, EthernetFrame, Image, ImageOptions, MacAddr, Transmit};
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::{FcoeAllow, FcoeConfig};
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};

/// Replies land here and are forgotten: the counters are what the tests read. Its clock is
/// the time the test sets, so service times are the same every run.
struct Discard(Vec<u8>, std::time::Instant);

impl Transmit for Discard {
    fn buffer(&mut self, len: usize) -> &mut [u8] {
        self.0.resize(len, 0);
        &mut self.0
    }
    fn commit(&mut self, _len: usize) {}
    fn now(&self) -> std::time::Instant {
        self.1
    }
}

const TARGET: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PC_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
const PC_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];

/// An AoE request from `src` to e`shelf`.`slot`: Ethernet header, AoE header (AoE r11
/// §2), then `arg`.
fn aoe(src: [u8; 6], shelf: u16, slot: u8, command: u8, tag: u32, arg: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&TARGET);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xa2, 0x10, 0]);
    f.extend_from_slice(&shelf.to_be_bytes());
    f.extend_from_slice(&[slot, command]);
    f.extend_from_slice(&tag.to_be_bytes());
    f.extend_from_slice(arg);
    f
}

/// An Issue ATA Command argument (AoE r11 §3.1), 48-bit, with `data` after it.
fn ata(aflags: u8, count: u8, opcode: u8, lba: u64, data: &[u8]) -> Vec<u8> {
    let mut a = vec![aflags, 0, count, opcode];
    a.extend_from_slice(&lba.to_le_bytes()[..6]);
    a.extend_from_slice(&[0, 0]);
    a.extend_from_slice(data);
    a
}

/// Two interfaces with workers, AoE (a plain export and an overlay export, two clients,
/// reads, writes, errors), FCoE LUNs, an overlay written by one client, flushes: every
/// source `collect` and `table` read, with counts a test can name.
fn sample_sources(dir: &std::path::Path) -> Sources {
    let image = |name: &str, read_only: bool| {
        let path = dir.join(name);
        std::fs::write(&path, vec![0u8; 64 * 1024]).unwrap();
        let opts = ImageOptions {
            read_only,
            durability: Durability::Writeback,
        };
        Arc::new(Image::open(&path, opts).unwrap())
    };
    let overlays = Arc::new(
        OverlaySet::open(
            image("base.img", true),
            &dir.join("overlays"),
            OverlayOptions {
                policy: OverlayPolicy::Persistent,
                ..OverlayOptions::default()
            },
        )
        .unwrap(),
    );
    let mac = MacAddr(TARGET);
    let target = Arc::new(AoeTarget::new(
        mac,
        1500,
        "host",
        vec![
            AoeExport::new(1, 2, image("a.img", false)),
            AoeExport::new(1, 3, overlays.clone()),
        ],
    ));
    let start = std::time::Instant::now();
    let mut tx = Discard(Vec::new(), start);
    let sector = [0x5a; 512];
    for frame in [
        aoe(PC_A, 1, 2, 0, 1, &ata(0x40, 1, 0x24, 0, &[])),
        aoe(PC_A, 1, 2, 0, 2, &ata(0x40, 2, 0x24, 8, &[])),
        aoe(PC_A, 1, 2, 0, 3, &ata(0x41, 1, 0x34, 4, &sector)),
        aoe(PC_A, 1, 2, 0, 4, &ata(0x00, 1, 0xec, 0, &[])),
        // An opcode no one serves (ABRT) and a read past the end (IDNF).
        aoe(PC_A, 1, 2, 0, 5, &ata(0x40, 1, 0x99, 0, &[])),
        aoe(PC_B, 1, 2, 0, 6, &ata(0x40, 1, 0x24, 1 << 20, &[])),
        // The overlay export: PC_B writes into its own overlay.
        aoe(PC_B, 1, 3, 0, 7, &ata(0x41, 1, 0x34, 9, &sector)),
        aoe(PC_B, 1, 3, 0, 8, &ata(0x40, 1, 0x24, 9, &[])),
        // Query Config, an unknown command (AoE Error 1), and a truncated header.
        aoe(PC_A, 0xffff, 0xff, 1, 9, &[0; 8]),
        aoe(PC_A, 1, 2, 0x10, 10, &[]),
        aoe(PC_A, 1, 2, 0, 11, &[])[..20].to_vec(),
    ] {
        // Each AoE request is answered 20 µs after its batch began.
        let now = tx.1;
        tx.1 = now + std::time::Duration::from_micros(20);
        target.handle_frame(&frame, now, &mut tx);
    }
    // iPXE's FCoE boot, replayed against a target with the WWPN it asked for: logins,
    // SCSI reads, and a write whose data (sent to the capture's responder's RX_ID) stays
    // outstanding. `now` moves 1 ms a frame, so the latencies are the same every run.
    let fcoe = Arc::new(FcoeTarget::new(FcoeConfig {
        mac: MacAddr([0x0a, 0x91, 0x10, 0xa3, 0x88, 0xf9]),
        mtu: 1500,
        wwpn: Wwn(0x2000_0025_b500_0001),
        wwnn: Wwn(0x1000_0025_b500_0001),
        luns: vec![
            (0, image("l0.img", false).into()),
            (5, image("l5.img", true).into()),
        ],
        allow: vec![(5, vec![FcoeAllow::Wwpn(Wwn(0x2000_5254_0000_000a))])],
    }));
    let ipxe = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    let mut now = tx.1;
    for frame in capture("ipxe-fcoe-p2p-boot.pcap") {
        let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
            continue;
        };
        if eth.src() == ipxe && matches!(eth.ethertype(), EtherType::Fcoe | EtherType::Fip) {
            now += std::time::Duration::from_millis(1);
            tx.1 = now;
            fcoe.handle_frame(&frame, now, &mut tx);
        }
    }
    let workers: Vec<Arc<WorkerStats>> = (0..2).map(|_| Arc::new(WorkerStats::default())).collect();
    for (i, w) in workers.iter().enumerate() {
        let n = i as u64 * 100;
        for (c, v) in [
            (&w.frames, 11),
            (&w.batches, 3),
            (&w.unknown_ethertype, 1),
            (&w.runts, 2),
            (&w.tx_frames, 10),
            (&w.tx_dropped, 4),
            (&w.ring_drops, 5),
            (&w.io_errors, 6),
        ] {
            c.store(n + v, Ordering::Relaxed);
        }
    }
    let sources = Sources {
        interfaces: vec![
            IfaceSources {
                name: "eth1".into(),
                workers,
                aoe: Some(target),
                fcoe: Some(fcoe),
            },
            IfaceSources {
                name: "eth\"2\"".into(),
                workers: vec![Arc::new(WorkerStats::default())],
                aoe: None,
                fcoe: None,
            },
        ],
        flush: FlushStats::default(),
        overlays: RwLock::new(vec![("pcs".into(), overlays)]),
    };
    sources.flush.flushes.store(7, Ordering::Relaxed);
    sources.flush.errors.store(1, Ordering::Relaxed);
    sources
}

fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("l2san-metrics-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The whole exposition of `sample_sources`, byte for byte: families, order, HELP texts,
/// labels, values. Only the overlay's allocated bytes depend on the file system.
#[test]
fn the_exposition_is_pinned() {
    let dir = temp_dir("pinned");
    let sources = sample_sources(&dir);
    let allocated = sources.overlays()[0].1.list()[0].bytes_allocated;
    let text = collect(&sources).render();
    let _ = std::fs::remove_dir_all(&dir);
    if update_golden() {
        let golden = text
            .replace(&format!(" {allocated}\n"), " ALLOCATED\n")
            .replace(env!("CARGO_PKG_VERSION"), "VERSION");
        write_golden("collect.golden.prom", &golden);
        return;
    }
    let want = include_str!("collect.golden.prom")
        .replace("ALLOCATED", &allocated.to_string())
        .replace("VERSION", env!("CARGO_PKG_VERSION"));
    if text != want {
        let first = text
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(text.lines().count().min(want.lines().count()));
        panic!(
            "collect() changed at line {}:\n got: {:?}\nwant: {:?}\nwhole output:\n{text}",
            first + 1,
            text.lines().nth(first),
            want.lines().nth(first)
        );
    }
}

/// `L2SAN_UPDATE_GOLDEN=1 cargo test -p l2san metrics` writes the pinned files anew, after a
/// deliberate change of the output: review their diff before committing it.
fn update_golden() -> bool {
    std::env::var_os("L2SAN_UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

fn write_golden(name: &str, text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/metrics")
        .join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn the_stats_table_is_pinned() {
    let dir = temp_dir("table");
    let sources = sample_sources(&dir);
    let text = table(&sources);
    let _ = std::fs::remove_dir_all(&dir);
    if update_golden() {
        write_golden("table.golden.txt", &text);
        return;
    }
    assert_eq!(text, include_str!("table.golden.txt"), "{text}");
}

/// One sample of family `name` whose labels are exactly `labels`.
fn sample<'a>(m: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a PrometheusValue> {
    let family = m.families.get(name)?;
    family
        .iter_samples()
        .find(|s| {
            let set = s.get_labelset().expect("a sample's label set");
            set.iter().count() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|s| &s.value)
}

type Scrape = MetricsExposition<PrometheusType, PrometheusValue>;

/// An independent parser of the text format reads the whole real exposition: every family
/// typed, label values unescaped, histograms cumulative with their `+Inf` bucket, `_sum` and
/// `_count`, no family split or sample repeated (it refuses each of those).
#[test]
fn a_prometheus_parser_reads_the_exposition() {
    let dir = temp_dir("parsed");
    let sources = sample_sources(&dir);
    let text = collect(&sources).render();
    let _ = std::fs::remove_dir_all(&dir);
    let m = parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(m.families.len(), families);
    for (name, kind) in [
        ("l2san_build_info", PrometheusType::Gauge),
        ("l2san_worker_frames_total", PrometheusType::Counter),
        (
            "l2san_aoe_export_latency_seconds",
            PrometheusType::Histogram,
        ),
        ("l2san_fcoe_sessions", PrometheusType::Gauge),
        ("l2san_fcoe_lun_latency_seconds", PrometheusType::Histogram),
        ("l2san_overlay_blocks", PrometheusType::Gauge),
    ] {
        assert_eq!(m.families[name].family_type, kind, "{name}");
    }
    let number = |name: &str, labels: &[(&str, &str)]| match sample(&m, name, labels) {
        Some(PrometheusValue::Counter(c)) => c.value.as_f64(),
        Some(PrometheusValue::Gauge(g)) => g.as_f64(),
        other => panic!("{name}{labels:?}: {other:?}"),
    };
    let export = [("iface", "eth1"), ("shelf", "1"), ("slot", "2")];
    assert_eq!(number("l2san_aoe_export_reads_total", &export), 2.0);
    assert_eq!(number("l2san_aoe_export_bytes_read_total", &export), 1536.0);
    assert_eq!(number("l2san_aoe_export_ata_errors_total", &export), 2.0);
    let client = [("iface", "eth1"), ("client", "52:54:00:00:00:0b")];
    assert_eq!(number("l2san_aoe_client_writes_total", &client), 1.0);
    let refused = [client[0], client[1], ("reason", "reserved")];
    assert_eq!(number("l2san_aoe_client_refused_total", &refused), 0.0);
    // The escaped quotes of a label value come back as they were.
    let odd = [("iface", "eth\"2\""), ("worker", "0")];
    assert_eq!(number("l2san_worker_frames_total", &odd), 0.0);
    assert_eq!(
        number(
            "l2san_worker_io_errors_total",
            &[("iface", "eth1"), ("worker", "1")]
        ),
        106.0
    );
    assert_eq!(number("l2san_fcoe_sessions", &[("iface", "eth1")]), 1.0);
    let pcs = [("export", "pcs"), ("client", "52:54:00:00:00:0b")];
    assert_eq!(number("l2san_overlay_blocks", &pcs), 1.0);
    assert_eq!(number("l2san_image_flushes_total", &[]), 7.0);
    let lun = [("iface", "eth1"), ("lun", "0")];
    let Some(PrometheusValue::Histogram(h)) = sample(&m, "l2san_fcoe_lun_latency_seconds", &lun)
    else {
        panic!("no LUN 0 latency histogram:\n{text}");
    };
    assert_eq!(h.count, Some(4));
    assert_eq!(h.buckets.len(), LATENCY_BOUNDS.len() + 1);
    assert_eq!(h.buckets.last().map(|b| b.upper_bound), Some(f64::INFINITY));
    assert_eq!(h.buckets.last().map(|b| b.count.as_f64()), Some(4.0));
}

/// The parser above is strict enough to catch what a writer could get wrong.
#[test]
fn the_parser_refuses_broken_expositions() {
    let good = "# HELP a_seconds A.\n# TYPE a_seconds histogram\n\
                a_seconds_bucket{le=\"0.1\"} 1\na_seconds_bucket{le=\"+Inf\"} 2\n\
                a_seconds_sum 0.5\na_seconds_count 2\n\
                # HELP b_total B.\n# TYPE b_total counter\nb_total{x=\"1\"} 3\n";
    parse_prometheus(good).unwrap();
    for broken in [
        // Buckets that are not cumulative.
        good.replace("le=\"0.1\"} 1", "le=\"0.1\"} 3"),
        // No +Inf bucket.
        good.replace("a_seconds_bucket{le=\"+Inf\"} 2\n", ""),
        // An unescaped quote in a label value.
        good.replace("x=\"1\"", "x=\"1\"\"\""),
        // One sample twice.
        format!("{good}b_total{{x=\"1\"}} 4\n"),
        // A family split in two.
        format!("{good}# HELP c C.\n# TYPE c gauge\nc 1\nb_total{{x=\"2\"}} 1\n"),
        // A sample that is not a number.
        good.replace("} 3", "} three"),
    ] {
        assert!(parse_prometheus(&broken).is_err(), "accepted:\n{broken}");
    }
}
