//! `l2san demo`: the built-in default. Makes its own network namespace and tap, writes a small
//! bootable disk image, serves it with this very binary, boots Debian's iPXE in QEMU with
//! `sanboot aoe:e0.0`, prints the guest's console, tears everything down, and exits 0 when the
//! guest's boot code reports success. Then, unless `--no-fcoe`, it shows FCoE too: a Debian
//! Linux guest (its kernel fetched with `apt-get download`, never installed) creates a VN2VN
//! controller and finds the same image as a SCSI disk over FCoE, served by the same process.
//!
//! The namespace, tap, QEMU and boot-disk code is the end-to-end test rig (`l2san-rig`), so
//! the demo runs exactly what the tests prove.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use l2san_rig::bootdisk;
use l2san_rig::fcoe_guest::{self, FcoeMode, FcoeScenario};
use l2san_rig::linux::Kernel;
use l2san_rig::rig::{self, AoeExport, BootResult, IpxeOpts, Netns, Target};

use crate::cli::DemoArgs;
use crate::Error;

/// Large enough to clear iPXE's 255x63 geometry assumption.
const IMAGE_LEN: usize = 8 << 20;

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Everything the demo needs that is not there, each with how to get it.
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if let Some(why) = rig::missing_privileges() {
        missing.push(format!("{why}: run the demo as root (sudo l2san demo)"));
    }
    if !in_path("qemu-system-x86_64") {
        missing.push("QEMU: apt-get install -y qemu-system-x86".into());
    }
    if !Path::new("/boot/ipxe.lkrn").is_file() {
        missing.push("Debian's iPXE (/boot/ipxe.lkrn): apt-get install -y ipxe".into());
    }
    if !in_path("ip") {
        missing.push("iproute2 (ip): apt-get install -y iproute2".into());
    }
    missing
}

/// A scratch directory, removed on drop.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(demo_args: DemoArgs) -> Result<ExitCode, Error> {
    let missing = missing();
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "the demo cannot run; missing: {}",
            missing.join("; ")
        )));
    }
    let dir = ScratchDir(std::env::temp_dir().join(format!("l2san-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).context("creating the demo's scratch directory")?;
    let image = dir.0.join("demo.img");
    std::fs::write(&image, bootdisk::build(IMAGE_LEN)).context("writing the demo image")?;

    let ns = Netns::new().context("creating the demo's network namespace")?;
    let tap = ns.tap("demo0", 1500).context("creating the demo's tap")?;
    let bin = std::env::current_exe().context("finding this l2san binary")?;
    println!(
        "l2san demo: serving a {} MiB boot disk as e0.0 on {} in network namespace {}",
        IMAGE_LEN >> 20,
        tap.name,
        ns.name()
    );
    // One process serves the image both ways: AoE e0.0 and FCoE LUN 0.
    let args: Vec<String> = vec![
        "--aoe".into(),
        AoeExport::new(0, 0, &image).l2san_arg(),
        "--fcoe".into(),
        format!("0={}", image.display()),
    ];
    let target = Target::l2san_args(&ns, &tap, &bin, &args, &dir.0.join("target.log"))
        .context("starting l2san serve")?;
    println!("l2san demo: booting Debian's iPXE in QEMU (TCG) with 'sanboot aoe:e0.0'...");
    let opts = IpxeOpts {
        timeout: Duration::from_secs(90),
        ..IpxeOpts::default()
    };
    let outcome = rig::ipxe_sanboot(&ns, &tap, &opts, &dir.0).context("running QEMU")?;
    if !demo_args.quiet {
        println!("----- guest console -----");
        for line in strip_escapes(&outcome.serial_log).lines() {
            if !line.trim().is_empty() {
                println!("{line}");
            }
        }
        println!("----- end of guest console -----");
    }
    let BootResult::Ok { reads, writes } = outcome.result else {
        eprintln!("l2san's log:\n{}", target.log_text());
        return Err(Error::Failed(anyhow::anyhow!(
            "the guest did not boot: {:?}",
            outcome.result
        )));
    };
    let on_disk = std::fs::read(&image).context("reading the demo image back")?;
    bootdisk::check_written(&on_disk).context("checking what the guest wrote")?;
    println!(
        "l2san demo: OK: the guest booted from AoE in {:.1} s, read {reads} and wrote {writes} sectors through int 13h, and its writes are in the image",
        outcome.elapsed.as_secs_f64()
    );
    if !demo_args.no_fcoe {
        fcoe_part(&ns, &tap, &dir.0, &image);
    }
    target.stop().context("stopping l2san serve")?;
    Ok(ExitCode::SUCCESS)
}

/// The FCoE half: a Linux guest finds the image as a SCSI disk over VN2VN. Informational: a
/// machine that cannot fetch Debian's kernel skips it and says why.
fn fcoe_part(ns: &Netns, tap: &rig::Tap, dir: &Path, image: &Path) {
    println!("l2san demo: now FCoE: a Debian Linux guest creates a VN2VN controller (this fetches Debian's kernel once; --no-fcoe skips it)...");
    let kernel = match Kernel::debian() {
        Ok(k) => k,
        Err(e) => {
            println!("l2san demo: FCoE part skipped: cannot get Debian's kernel: {e:#}");
            return;
        }
    };
    // Read-only scenario: the guest reads the whole disk and its writes are not needed here.
    let scenario = FcoeScenario {
        mode: FcoeMode::ReadOnly,
        ..FcoeScenario::default()
    };
    match fcoe_guest::run_fcoe(ns, tap, &kernel, &scenario, dir) {
        Ok(out) => {
            let get = |k: &str| out.report.get(k).map_or("?", |v| v.as_str());
            println!(
                "l2san demo: FCoE: remote port {} found in {} ms; the LUN is SCSI disk {}; whole-disk MD5 in the guest {} (host {})",
                get("RPORT"),
                get("RPORT-MS"),
                get("SCSI"),
                get("READ-MD5"),
                rig::md5_file(image).unwrap_or_else(|_| "?".into())
            );
        }
        Err(e) => println!("l2san demo: FCoE part did not run: {e:#}"),
    }
}

/// The console text without the terminal escape sequences SeaBIOS and iPXE draw with
/// (`ESC [ ... letter`, `ESC c`) and without carriage returns.
fn strip_escapes(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // Parameters and intermediates, up to and including the final letter.
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() || c == '@' || c == '~' {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn strips_console_escapes() {
        let raw = "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\r\n\x1b[0;1miPXE 1.0\x1b[0m ok\r\n";
        assert_eq!(super::strip_escapes(raw), "SeaBIOS\niPXE 1.0 ok\n");
    }
}
