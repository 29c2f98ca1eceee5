//! Choosing the compute device from `--device`.

use anyhow::{bail, Result};
use burn::prelude::Device;

/// The devices this build of keen can use, for help texts and errors.
pub const AVAILABLE: &str = if cfg!(all(feature = "cuda", feature = "wgpu")) {
    "flex, cuda, wgpu"
} else if cfg!(feature = "cuda") {
    "flex, cuda"
} else if cfg!(feature = "wgpu") {
    "flex, wgpu"
} else {
    "flex"
};

/// Resolves a comma-separated device list: the first holds the model, the others join it for
/// data-parallel training (e.g. `cuda:0,cuda:1`).
pub fn parse_devices(list: &str) -> Result<(Device, Vec<Device>)> {
    let mut devices = list.split(',').map(|name| parse_device(name.trim()));
    let main = devices.next().unwrap_or_else(|| parse_device("flex"))?;
    Ok((main, devices.collect::<Result<_>>()?))
}

/// The error for a device whose backend this build was compiled without.
#[cfg(not(all(feature = "cuda", feature = "wgpu")))]
fn missing_feature(name: &str, kind: &str) -> String {
    format!(
        "device '{name}' needs a keen built with `--features {kind}`; this build has: {AVAILABLE}"
    )
}

/// Resolves a device name: `flex` (pure-Rust CPU, always), `cuda[:N]`, `wgpu` (cargo features).
pub fn parse_device(name: &str) -> Result<Device> {
    let (kind, index) = match name.split_once(':') {
        Some((kind, index)) => (kind, index.parse::<usize>().ok()),
        None => (name, None),
    };
    match kind {
        "flex" | "cpu" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(index.unwrap_or(0))),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(Default::default())),
        // One arm per backend left out of this build: a shared `"cuda" | "wgpu"` arm would be
        // partly unreachable in a build that has one of them.
        #[cfg(not(feature = "cuda"))]
        "cuda" => bail!(missing_feature(name, kind)),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => bail!(missing_feature(name, kind)),
        _ => {
            let _ = index;
            bail!("unknown device '{name}'; this build has: {AVAILABLE}")
        }
    }
}
