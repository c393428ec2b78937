//! `l2san serve`: open the images and the interface, start the workers, flush on the way out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use l2san_aoe::{AoeExport, AoeTarget};
use l2san_common::io::sys::{privilege, signal};
use l2san_common::worker::{self, FrameHandler, WorkerRole, WorkerStats};
use l2san_common::{Durability, Image, ImageOptions, Interface, MacAddr};
use l2san_fcoe::wire::Wwn;
use l2san_fcoe::{FcoeConfig, FcoeTarget};

use crate::cli::{ImageSpec, ServeArgs};
use crate::state;
use crate::Error;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "l2san".to_string())
}

/// Opens every image once, however many exports name it, so that AoE and FCoE exports of one
/// image share one map and see the same bytes.
#[derive(Default)]
struct Images {
    by_path: HashMap<PathBuf, (Arc<Image>, ImageOptions, PathBuf)>,
}

impl Images {
    fn open(&mut self, spec: &ImageSpec) -> Result<Arc<Image>, Error> {
        let opts = ImageOptions {
            read_only: spec.read_only,
            durability: spec.durability,
        };
        let key = std::fs::canonicalize(&spec.image).unwrap_or_else(|_| spec.image.clone());
        match self.by_path.get(&key) {
            Some((image, first, _)) if *first == opts => Ok(image.clone()),
            Some(_) => Err(Error::Usage(format!(
                "image {} is exported twice with different options; give every export of it the same ,ro/,sync options",
                spec.image.display()
            ))),
            None => {
                let image = Arc::new(
                    Image::open(&spec.image, opts).map_err(|e| Error::Usage(e.to_string()))?,
                );
                self.by_path.insert(key, (image.clone(), opts, spec.image.clone()));
                Ok(image)
            }
        }
    }

    fn all(&self) -> Vec<Arc<Image>> {
        self.by_path.values().map(|(i, _, _)| i.clone()).collect()
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

fn aoe_target(
    args: &ServeArgs,
    iface: &Interface,
    mtu: u32,
    images: &mut Images,
) -> Result<Option<AoeTarget>, Error> {
    if args.aoe.is_empty() {
        return Ok(None);
    }
    let mut seen: HashMap<(u16, u8), &PathBuf> = HashMap::new();
    let mut exports = Vec::new();
    for spec in &args.aoe {
        if let Some(other) = seen.insert((spec.shelf, spec.slot), &spec.image.image) {
            return Err(Error::Usage(format!(
                "e{}.{} is given twice ({} and {}); give each export its own shelf.slot",
                spec.shelf,
                spec.slot,
                other.display(),
                spec.image.image.display()
            )));
        }
        let image = images.open(&spec.image)?;
        tracing::info!(
            "AoE export e{}.{} on {} ({}): {}",
            spec.shelf,
            spec.slot,
            iface.name,
            iface.mac,
            describe(&image)
        );
        let mut export = AoeExport::new(spec.shelf, spec.slot, image);
        export.buffer_count = args.buffer_count;
        export.allow = spec.image.allow.clone();
        exports.push(export);
    }
    Ok(Some(AoeTarget::new(iface.mac, mtu, &hostname(), exports)))
}

fn fcoe_target(
    args: &ServeArgs,
    iface: &Interface,
    mtu: u32,
    images: &mut Images,
) -> Result<Option<FcoeTarget>, Error> {
    if args.fcoe.is_empty() {
        return Ok(None);
    }
    let wwpn = args.wwpn.unwrap_or_else(|| default_wwn(0x2000, iface.mac));
    let wwnn = args.wwnn.unwrap_or_else(|| default_wwn(0x1000, iface.mac));
    let mut luns = Vec::new();
    for spec in &args.fcoe {
        if luns.iter().any(|(lun, _)| *lun == spec.lun as u64) {
            return Err(Error::Usage(format!(
                "FCoE LUN {} is given twice; give each LUN its own number",
                spec.lun
            )));
        }
        let image = images.open(&spec.image)?;
        tracing::info!(
            "FCoE LUN {} on {} (WWPN {wwpn}): {}",
            spec.lun,
            iface.name,
            describe(&image)
        );
        luns.push((spec.lun as u64, image));
    }
    Ok(Some(FcoeTarget::new(FcoeConfig {
        mac: iface.mac,
        mtu,
        wwpn,
        wwnn,
        luns,
    })))
}

pub fn run(args: ServeArgs) -> Result<ExitCode, Error> {
    let iface = Interface::by_name(&args.interface).map_err(|e| Error::Usage(e.to_string()))?;
    let mtu = iface.mtu().unwrap_or(1500);
    let mut images = Images::default();
    let mut handlers: Vec<Arc<dyn FrameHandler>> = Vec::new();
    let aoe = aoe_target(&args, &iface, mtu, &mut images)?.map(Arc::new);
    let mut saver = None;
    if let Some(t) = &aoe {
        if let Some(path) = &args.state_file {
            saver = Some(state::Saver::load(path, t.clone())?);
        }
        handlers.push(t.clone());
    }
    if let Some(t) = fcoe_target(&args, &iface, mtu, &mut images)? {
        handlers.push(Arc::new(t));
    }
    let images = images.all();

    if let Some(name) = &args.user {
        let user = privilege::User::lookup(name).map_err(Error::Usage)?;
        privilege::drop_to(user).with_context(|| format!("dropping privileges to {name}"))?;
        tracing::info!(
            "running as {name} (uid {}), with CAP_NET_RAW and CAP_NET_ADMIN only",
            user.uid
        );
    }
    signal::install_stop_handler().context("installing the SIGINT/SIGTERM handler")?;
    let count = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n as usize,
    );
    let group = worker::fanout_group(iface.index);
    let mut workers = Vec::new();
    for index in 0..count {
        let role = WorkerRole {
            index,
            count,
            fanout_group: group,
            busy_poll: Duration::from_micros(args.busy_poll_us),
        };
        let iface = iface.clone();
        let handlers = handlers.clone();
        let stats = Arc::new(WorkerStats::default());
        let backend = args.backend;
        workers.push(
            std::thread::Builder::new()
                .name(format!("l2san-{}-{index}", iface.name))
                .spawn(move || worker::run_with(&iface, &handlers, &stats, role, backend))
                .context("starting a worker thread")?,
        );
    }

    // The periodic flusher bounds what a power loss can take from writeback exports.
    let interval = Duration::from_secs(args.flush_interval);
    let mut last_flush = Instant::now();
    while !signal::stop_requested() && !workers.iter().any(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if last_flush.elapsed() >= interval {
            last_flush = Instant::now();
            flush_all(&images, false);
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
    let ok = flush_all(&images, true);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Flush every writable image (`all`) or those written since the last flush. Errors are
/// logged; they do not stop the service.
fn flush_all(images: &[Arc<Image>], all: bool) -> bool {
    let mut ok = true;
    for image in images.iter().filter(|i| !i.read_only()) {
        let r = if all {
            image.flush().map(|_| true)
        } else {
            image.flush_if_dirty()
        };
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
