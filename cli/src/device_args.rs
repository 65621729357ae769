//! `--adapter`, offered by the commands that run on one device (not by `devices`, which lists
//! them all, nor `pack`, which runs on the CPU).

use sparq::gpu::AdapterSelector;

/// The device a command runs on.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DeviceArgs {
    /// Adapter: index, name substring, backend (vulkan|metal|dx12|gl) or `best` [env: SPARQ_ADAPTER].
    #[arg(long)]
    pub adapter: Option<String>,
}

impl DeviceArgs {
    /// `--adapter`, else `SPARQ_ADAPTER`, else the best adapter.
    pub fn selector(&self) -> AdapterSelector {
        self.adapter
            .as_deref()
            .map(AdapterSelector::parse)
            .unwrap_or_else(AdapterSelector::from_env)
    }
}
