//! `l2san serve`: open the images and the interface, start the workers, flush on the way out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use l2san_aoe::{AoeExport, AoeTarget};
use l2san_common::io::sys::signal;
use l2san_common::io::Transmit;
use l2san_common::worker::{self, FrameHandler, WorkerStats};
use l2san_common::{EtherType, Image, ImageOptions, Interface};

use crate::cli::ServeArgs;
use crate::Error;

/// The AoE target as the worker sees it.
struct AoeHandler(Arc<AoeTarget>);

impl FrameHandler for AoeHandler {
    fn ethertypes(&self) -> &[u16] {
        &[EtherType::AOE]
    }
    fn handle(&self, frame: &[u8], tx: &mut dyn Transmit) {
        self.0.handle_frame(frame, tx);
    }
    fn link_changed(&self, mtu: u32, tx: &mut dyn Transmit) {
        self.0.set_mtu(mtu);
        self.0.advertise(tx);
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "l2san".to_string())
}

/// Open every image once, however many exports name it, so that they share one map.
fn open_images(args: &ServeArgs) -> Result<Vec<Arc<Image>>, Error> {
    let mut seen: HashMap<(u16, u8), &PathBuf> = HashMap::new();
    let mut by_path: HashMap<PathBuf, (Arc<Image>, ImageOptions)> = HashMap::new();
    let mut images = Vec::new();
    for spec in &args.aoe {
        if let Some(other) = seen.insert((spec.shelf, spec.slot), &spec.image) {
            return Err(Error::Usage(format!(
                "e{}.{} is given twice ({} and {}); give each export its own shelf.slot",
                spec.shelf,
                spec.slot,
                other.display(),
                spec.image.display()
            )));
        }
        let opts = ImageOptions {
            read_only: spec.read_only,
            durability: spec.durability,
        };
        let key = std::fs::canonicalize(&spec.image).unwrap_or_else(|_| spec.image.clone());
        let image = match by_path.get(&key) {
            Some((image, first)) if *first == opts => image.clone(),
            Some(_) => {
                return Err(Error::Usage(format!(
                    "image {} is exported twice with different options; give both exports the same ,ro/,sync options",
                    spec.image.display()
                )))
            }
            None => {
                let image = Arc::new(Image::open(&spec.image, opts).map_err(|e| Error::Usage(e.to_string()))?);
                by_path.insert(key, (image.clone(), opts));
                image
            }
        };
        images.push(image);
    }
    Ok(images)
}

pub fn run(args: ServeArgs) -> Result<ExitCode, Error> {
    let iface = Interface::by_name(&args.interface).map_err(|e| Error::Usage(e.to_string()))?;
    let images = open_images(&args)?;
    let mtu = iface.mtu().unwrap_or(1500);

    let mut exports = Vec::new();
    for (spec, image) in args.aoe.iter().zip(&images) {
        tracing::info!(
            "export e{}.{} on {} ({}): {} ({} sectors, {}, {})",
            spec.shelf,
            spec.slot,
            iface.name,
            iface.mac,
            spec.image.display(),
            image.sectors(),
            if image.read_only() {
                "read-only"
            } else {
                "read-write"
            },
            match image.durability() {
                l2san_common::Durability::Writeback => "writeback",
                l2san_common::Durability::Sync => "sync",
            }
        );
        let mut export = AoeExport::new(spec.shelf, spec.slot, image.clone());
        export.buffer_count = args.buffer_count;
        exports.push(export);
    }
    let target = Arc::new(AoeTarget::new(iface.mac, mtu, &hostname(), exports));
    let handlers: Vec<Arc<dyn FrameHandler>> = vec![Arc::new(AoeHandler(target))];

    signal::install_stop_handler().context("installing the SIGINT/SIGTERM handler")?;
    let stats = Arc::new(WorkerStats::default());
    let worker = {
        let iface = iface.clone();
        let stats = stats.clone();
        std::thread::Builder::new()
            .name(format!("l2san-{}", iface.name))
            .spawn(move || worker::run(&iface, &handlers, &stats))
            .context("starting the worker thread")?
    };

    // The periodic flusher bounds what a power loss can take from writeback exports.
    let interval = Duration::from_secs(args.flush_interval);
    let mut last_flush = Instant::now();
    while !signal::stop_requested() && !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if last_flush.elapsed() >= interval {
            last_flush = Instant::now();
            flush_all(&images, false);
        }
    }
    signal::request_stop();
    let _ = worker.join();
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
            tracing::warn!("flushing {} failed: {e}; data written since the last flush may not be on stable storage", image.path().display());
        }
    }
    ok
}
