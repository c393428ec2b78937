//! iPXE boots twice from a `reset` overlay export of the bootdisk image. The boot code checks
//! the pattern over LBAs 3-1026, then writes the complement to LBAs 1001-1064 (and 333-335):
//! a second boot that saw the first boot's writes would fail its pattern check. So:
//!
//! - first boot: every read and write succeeds, the writes go to this client's overlay and the
//!   base file stays byte for byte as built; `l2san ctl overlay commit` of the client gives
//!   exactly what the boot code wrote over the base;
//! - after a silence longer than `overlay-reset-after`, the second boot's IDENTIFY is a new
//!   boot: the overlay is discarded and the boot code finds the pristine pattern again.

#![forbid(unsafe_code)]

use std::fs;
use std::time::Duration;

use anyhow::{ensure, Context};
use l2san_rig::bootdisk;
use l2san_rig::fixture;
use l2san_rig::rig::{self, BootResult, IpxeOpts, Netns};

/// 8 MiB: also clear of iPXE's geometry pitfall without the partition entry.
const IMAGE_LEN: usize = 8 << 20;
const RESET_AFTER_S: u64 = 2;

#[test]
fn ipxe_boots_twice_over_a_reset_overlay() {
    rig::e2e_l2san("ipxe_overlay", "overlay exports are l2san's", |run| {
        let base = run.path("golden.img");
        let built = bootdisk::build(IMAGE_LEN);
        fs::write(&base, &built)?;
        let config = run.path("l2san.toml");
        fs::write(
            &config,
            format!(
                "overlay-reset-after = {RESET_AFTER_S}\n[[interface]]\nname = \"tap0\"\n\n\
                 [[export]]\nname = \"golden\"\nimage = \"{}\"\naoe = \"0.0\"\n\
                 overlay = \"reset\"\noverlay-dir = \"{}\"\n",
                base.display(),
                run.path("overlays").display()
            ),
        )?;
        let ns = Netns::new()?;
        let tap = ns.tap("tap0", 1500)?;
        let socket = run.path("ctl.sock");
        let log = run.path("l2san.log");
        let bin = rig::l2san_bin()?;
        let mut l2san = fixture::serve_config(&ns, &config, &socket, &log)?;
        let expected = BootResult::Ok {
            reads: bootdisk::expected_reads(),
            writes: bootdisk::expected_writes(),
        };

        let first = rig::ipxe_sanboot(&ns, &tap, &IpxeOpts::default(), run.dir())?;
        ensure!(
            first.result == expected,
            "first boot: {:?}, expected {expected:?}",
            first.result
        );
        ensure!(fs::read(&base)? == built, "the base image changed");
        let (ok, list, err) = fixture::ctl(&bin, &socket, &["overlay", "list"])?;
        ensure!(ok, "overlay list: {err}");
        let rows: Vec<&str> = list.lines().filter(|l| l.starts_with("golden")).collect();
        ensure!(rows.len() == 1, "one client's overlay expected:\n{list}");
        let client = rows[0]
            .split_whitespace()
            .nth(1)
            .context("no client column")?
            .to_string();
        let committed = run.path("committed.img");
        let (ok, out, err) = fixture::ctl(
            &bin,
            &socket,
            &[
                "overlay",
                "commit",
                &client,
                committed.to_str().context("path")?,
            ],
        )?;
        ensure!(ok, "overlay commit: {out}{err}");
        bootdisk::check_written(&fs::read(&committed)?)?;

        // Silence, then a new boot: the overlay goes, the pattern is whole again.
        std::thread::sleep(Duration::from_secs(RESET_AFTER_S + 1));
        let second = rig::ipxe_sanboot(&ns, &tap, &IpxeOpts::default(), run.dir())?;
        ensure!(
            second.result == expected,
            "second boot: {:?}, expected {expected:?} (did it see the first boot's writes?)",
            second.result
        );
        let text = fs::read_to_string(&log)?;
        ensure!(
            text.contains(&format!("{client} booted again: its overlay was reset")),
            "no reset in the log:\n{text}"
        );
        ensure!(fs::read(&base)? == built, "the base image changed");
        let status = l2san.stop(Duration::from_secs(20))?;
        ensure!(status.success(), "l2san exit status {status}");
        rig::report(format_args!(
            "ipxe_overlay: client {client} booted in {:.1} s and {:.1} s; the second boot found \
             the base again (overlay reset), the commit held the first boot's writes, the base \
             never changed",
            first.elapsed.as_secs_f64(),
            second.elapsed.as_secs_f64()
        ));
        Ok(())
    });
}
