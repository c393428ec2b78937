//! `l2san serve`: turn the flags or the config file into a [`Plan`], open the images and the
//! interfaces, start each interface's workers, flush on the way out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use l2san_aoe::{AoeExport, AoeTarget};
use l2san_common::io::sys::{privilege, signal};
use l2san_common::worker::{self, FrameHandler, WorkerRole, WorkerStats};
use l2san_common::{Durability, Image, ImageOptions, Interface, MacAddr};
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::{FcoeConfig, FcoeTarget};

use crate::cli::ServeArgs;
use crate::config::{self, ExportPlan, Origin, Plan};
use crate::metrics::{FlushStats, IfaceSources, Sources};
use crate::Error;
use crate::{ctl, metrics, state};

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "l2san".to_string())
}

/// Opens every image once, however many exports name it, so that AoE and FCoE exports of one
/// image, on any interface, share one map and see the same bytes. ([`config::validate`] has
/// made sure that every export of one image has the same options.)
#[derive(Default)]
struct Images {
    by_path: HashMap<PathBuf, Arc<Image>>,
}

impl Images {
    fn open(&mut self, export: &ExportPlan) -> Result<Arc<Image>, Error> {
        let spec = &export.image;
        let key = config::image_key(&spec.image);
        if let Some(image) = self.by_path.get(&key) {
            return Ok(image.clone());
        }
        let opts = ImageOptions {
            read_only: spec.read_only,
            durability: spec.durability,
        };
        let image = Image::open(&spec.image, opts)
            .map_err(|e| Error::Usage(located(&export.origin, "image", e)))?;
        let image = Arc::new(image);
        self.by_path.insert(key, image.clone());
        Ok(image)
    }

    fn all(&self) -> Vec<Arc<Image>> {
        self.by_path.values().cloned().collect()
    }
}

/// A message about a plan item: with its file and line when it comes from the config file,
/// as it is when it comes from the flags.
fn located(origin: &Origin, key: &str, msg: impl std::fmt::Display) -> String {
    match origin.at(key) {
        Some(at) => format!("{at}: {}: {msg}", origin.label),
        None => msg.to_string(),
    }
}

fn describe(image: &Image) -> String {
    format!(
        "{} ({} sectors, {}, {})",
        image.path().display(),
        image.sectors(),
        if image.read_only() {
            "read-only"
        } else {
            "read-write"
        },
        match image.durability() {
            Durability::Writeback => "writeback",
            Durability::Sync => "sync",
        }
    )
}

/// The default FCoE names: `20:00:<mac>` and `10:00:<mac>`.
fn default_wwn(prefix: u16, mac: MacAddr) -> Wwn {
    let mut b = [0u8; 8];
    b[..2].copy_from_slice(&prefix.to_be_bytes());
    b[2..].copy_from_slice(&mac.0);
    Wwn::from_bytes(b)
}

/// The AoE target of interface `i` of the plan, if any export on it has an AoE address.
fn aoe_target(
    plan: &Plan,
    i: usize,
    iface: &Interface,
    mtu: u32,
    images: &mut Images,
) -> Result<Option<AoeTarget>, Error> {
    let mut exports = Vec::new();
    for e in plan.exports_on(i) {
        let Some((shelf, slot)) = e.aoe else { continue };
        let image = images.open(e)?;
        tracing::info!(
            "AoE export e{shelf}.{slot} on {} ({}): {}",
            iface.name,
            iface.mac,
            describe(&image)
        );
        let mut export = AoeExport::new(shelf, slot, image);
        export.buffer_count = e.buffer_count;
        export.allow = e.image.allow.clone();
        export.config_string = e.config_string.clone();
        exports.push(export);
    }
    if exports.is_empty() {
        return Ok(None);
    }
    Ok(Some(AoeTarget::new(iface.mac, mtu, &hostname(), exports)))
}

/// The FCoE target of interface `i` of the plan, if any export on it has a LUN.
fn fcoe_target(
    plan: &Plan,
    i: usize,
    iface: &Interface,
    mtu: u32,
    images: &mut Images,
) -> Result<Option<FcoeTarget>, Error> {
    let names = &plan.interfaces[i];
    let wwpn = names.wwpn.unwrap_or_else(|| default_wwn(0x2000, iface.mac));
    let wwnn = names.wwnn.unwrap_or_else(|| default_wwn(0x1000, iface.mac));
    let mut luns = Vec::new();
    let mut allow = Vec::new();
    for e in plan.exports_on(i) {
        let Some(lun) = e.lun else { continue };
        let image = images.open(e)?;
        tracing::info!(
            "FCoE LUN {lun} on {} (WWPN {wwpn}): {}",
            iface.name,
            describe(&image)
        );
        if !e.fcoe_allow.is_empty() {
            let who: Vec<String> = e.fcoe_allow.iter().map(|a| a.to_string()).collect();
            tracing::info!("FCoE LUN {lun} allowed to {}", who.join(" "));
            allow.push((lun as u64, e.fcoe_allow.clone()));
        }
        luns.push((lun as u64, image));
    }
    if luns.is_empty() {
        return Ok(None);
    }
    Ok(Some(FcoeTarget::new(FcoeConfig {
        mac: iface.mac,
        mtu,
        wwpn,
        wwnn,
        luns,
        allow,
    })))
}

pub fn run(args: ServeArgs) -> Result<ExitCode, Error> {
    let plan = Plan::for_serve(&args)?;
    execute(&plan)
}

/// Serve `plan`: open the interfaces and images, start the workers of every interface, flush
/// and save state until asked to stop.
fn execute(plan: &Plan) -> Result<ExitCode, Error> {
    let mut images = Images::default();
    let mut aoe_targets = Vec::new();
    let mut served: Vec<(Interface, Vec<Arc<dyn FrameHandler>>)> = Vec::new();
    let count = plan.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n as usize,
    );
    let mut sources = Vec::new();
    for (i, planned) in plan.interfaces.iter().enumerate() {
        let iface = Interface::by_name(&planned.name)
            .map_err(|e| Error::Usage(located(&planned.origin, "name", e)))?;
        let mtu = iface.mtu().unwrap_or(1500);
        let mut handlers: Vec<Arc<dyn FrameHandler>> = Vec::new();
        let mut source = IfaceSources {
            name: iface.name.clone(),
            workers: (0..count).map(|_| Arc::default()).collect(),
            aoe: None,
            fcoe: None,
        };
        if let Some(t) = aoe_target(plan, i, &iface, mtu, &mut images)? {
            let t = Arc::new(t);
            aoe_targets.push(t.clone());
            source.aoe = Some(t.clone());
            handlers.push(t);
        }
        if let Some(t) = fcoe_target(plan, i, &iface, mtu, &mut images)? {
            let t = Arc::new(t);
            source.fcoe = Some(t.clone());
            handlers.push(t);
        }
        served.push((iface, handlers));
        sources.push(source);
    }
    let mut saver = match &plan.state_file {
        Some(path) if !aoe_targets.is_empty() => Some(state::Saver::load(path, aoe_targets)?),
        _ => None,
    };
    let images = images.all();
    let sources = Arc::new(Sources {
        interfaces: sources,
        flush: FlushStats::default(),
    });
    // Bound before privileges are dropped (a port below 1024, a socket in /run), served after.
    let metrics_listener = match plan.metrics {
        Some(addr) => Some(metrics::bind(addr).map_err(|e| {
            Error::Usage(located(
                &plan.origin,
                "metrics",
                format!(
                    "cannot listen for metrics on {addr}: {e}; pick another --metrics address:port"
                ),
            ))
        })?),
        None => None,
    };
    let ctl_socket = ctl::bind(&plan.ctl_socket);

    if let Some(name) = &plan.user {
        let user = privilege::User::lookup(name).map_err(Error::Usage)?;
        privilege::drop_to(user).with_context(|| format!("dropping privileges to {name}"))?;
        tracing::info!(
            "running as {name} (uid {}), with CAP_NET_RAW and CAP_NET_ADMIN only",
            user.uid
        );
    }
    signal::install_stop_handler().context("installing the SIGINT/SIGTERM handler")?;
    if let Some(listener) = metrics_listener {
        let addr = listener
            .local_addr()
            .context("the metrics listener's address")?;
        metrics::spawn(listener, sources.clone()).context("starting the metrics thread")?;
        tracing::info!("metrics at http://{addr}/metrics");
    }
    if let Some(socket) = &ctl_socket {
        ctl::spawn(socket, sources.clone()).context("starting the control socket thread")?;
    }
    // Each interface has its own workers and its own fanout group.
    let mut workers = Vec::new();
    for ((iface, handlers), source) in served.iter().zip(&sources.interfaces) {
        let group = worker::fanout_group(iface.index);
        for index in 0..count {
            let role = WorkerRole {
                index,
                count,
                fanout_group: group,
                busy_poll: Duration::from_micros(plan.busy_poll_us),
            };
            let iface = iface.clone();
            let handlers = handlers.clone();
            let stats: Arc<WorkerStats> = source.workers[index].clone();
            let backend = plan.backend;
            workers.push(
                std::thread::Builder::new()
                    .name(format!("l2san-{}-{index}", iface.name))
                    .spawn(move || worker::run_with(&iface, &handlers, &stats, role, backend))
                    .context("starting a worker thread")?,
            );
        }
    }

    // The periodic flusher bounds what a power loss can take from writeback exports.
    let interval = Duration::from_secs(plan.flush_interval);
    let mut last_flush = Instant::now();
    while !signal::stop_requested() && !workers.iter().any(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if last_flush.elapsed() >= interval {
            last_flush = Instant::now();
            flush_all(&images, false, &sources.flush);
        }
        if let Some(saver) = &mut saver {
            saver.save_if_changed();
        }
    }
    if let Some(saver) = &mut saver {
        saver.save_if_changed();
    }
    signal::request_stop();
    for w in workers {
        let _ = w.join();
    }
    let ok = flush_all(&images, true, &sources.flush);
    drop(ctl_socket);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Flush every writable image (`all`) or those written since the last flush. Errors are
/// logged; they do not stop the service.
fn flush_all(images: &[Arc<Image>], all: bool, stats: &FlushStats) -> bool {
    let mut ok = true;
    for image in images.iter().filter(|i| !i.read_only()) {
        let r = if all {
            image.flush().map(|_| true)
        } else {
            image.flush_if_dirty()
        };
        match r {
            Ok(true) => {
                stats.flushes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Err(e) = r {
            ok = false;
            tracing::warn!(
                "flushing {} failed: {e}; data written since the last flush may not be on stable storage",
                image.path().display()
            );
        }
    }
    ok
}
