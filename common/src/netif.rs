//! Network interfaces: name, index, MAC (from `pnet_datalink`) and the current MTU.

use std::path::PathBuf;

use crate::ether::MacAddr;

#[derive(Debug, thiserror::Error)]
pub enum NetifError {
    #[error("no network interface named '{name}'; pick one of: {available} (ip link shows them)")]
    NotFound { name: String, available: String },
    #[error(
        "interface '{name}' has no Ethernet MAC address; l2san serves Ethernet interfaces only"
    )]
    NoMac { name: String },
}

/// An Ethernet interface as l2san serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: MacAddr,
}

impl Interface {
    /// Look up an interface by name.
    pub fn by_name(name: &str) -> Result<Interface, NetifError> {
        let all = pnet_datalink::interfaces();
        let Some(found) = all.iter().find(|i| i.name == name) else {
            let available = all
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(NetifError::NotFound {
                name: name.to_string(),
                available,
            });
        };
        let mac = found
            .mac
            .filter(|m| m.octets() != [0; 6])
            .ok_or_else(|| NetifError::NoMac {
                name: name.to_string(),
            })?;
        Ok(Interface {
            name: found.name.clone(),
            index: found.index,
            mac: MacAddr(mac.octets()),
        })
    }

    /// The MTU now (it can change while we serve). `None` if the interface vanished.
    pub fn mtu(&self) -> Option<u32> {
        let path = PathBuf::from("/sys/class/net").join(&self.name).join("mtu");
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// Whether the interface is up and has a carrier, as far as sysfs tells.
    pub fn is_up(&self) -> bool {
        let path = PathBuf::from("/sys/class/net")
            .join(&self.name)
            .join("operstate");
        matches!(
            std::fs::read_to_string(path).as_deref().map(str::trim),
            Ok("up") | Ok("unknown")
        )
    }
}
