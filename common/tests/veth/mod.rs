//! A veth pair for the tests and examples that need a real link: made by `ip`, one queue each
//! way, IPv6 off (so the kernel sends nothing of its own on it), removed on drop. Needs root.

#![allow(dead_code)] // Each test binary uses its own part.

use std::process::Command;

/// The two ends of a veth pair this process made.
pub struct VethPair {
    pub a: String,
    pub b: String,
}

impl VethPair {
    /// `l2{tag}a<pid>` and `l2{tag}b<pid>`, up, at `mtu` when given. Panics when `ip` fails.
    pub fn new(tag: &str, mtu: Option<u32>) -> VethPair {
        let a = format!("l2{tag}a{}", std::process::id() % 100000);
        let b = format!("l2{tag}b{}", std::process::id() % 100000);
        let mut end = vec!["numtxqueues", "1", "numrxqueues", "1"];
        let mtu = mtu.map(|m| m.to_string());
        if let Some(mtu) = &mtu {
            end.extend(["mtu", mtu]);
        }
        let ok = Command::new("ip")
            .args(["link", "add", &a])
            .args(&end)
            .args(["type", "veth", "peer", "name", &b])
            .args(&end)
            .status()
            .expect("running ip")
            .success();
        assert!(ok, "ip link add {a} type veth peer name {b} failed");
        let pair = VethPair { a, b };
        for dev in [&pair.a, &pair.b] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
            assert!(
                Command::new("ip")
                    .args(["link", "set", dev, "up"])
                    .status()
                    .expect("running ip")
                    .success(),
                "ip link set {dev} up failed"
            );
        }
        pair
    }

    /// Whether an XDP program is attached to end `a`.
    pub fn xdp_attached(&self) -> bool {
        let out = Command::new("ip")
            .args(["link", "show", "dev", &self.a])
            .output()
            .expect("running ip");
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains("prog/xdp") || text.contains(" xdp")
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.a]).status();
    }
}

/// Whether this process runs as root (what making links and loading XDP need).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
