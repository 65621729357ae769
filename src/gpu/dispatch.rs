//! A recorded dispatch: pipeline, bind group and grid, ready to be replayed into any compute
//! pass. Planning (validation, buffer and bind-group creation) happens once; recording is
//! cheap, so a whole forward pass or a benchmark loop records many of them into one encoder.

use std::sync::Arc;

/// One compute dispatch with everything bound (made by [`super::Launch::build`]).
#[derive(Clone)]
pub struct Dispatch {
    /// Label for debugging and profiles.
    pub label: String,
    /// The pipeline to run.
    pub pipeline: Arc<wgpu::ComputePipeline>,
    /// Bind group 0.
    pub bind_group: wgpu::BindGroup,
    /// Dynamic offsets of bind group 0: the params uniform's offset, if the kernel has params.
    pub offsets: Vec<u32>,
    /// Workgroups in x and y.
    pub grid: (u32, u32),
}

impl Dispatch {
    /// Records the dispatch into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &self.offsets);
        pass.dispatch_workgroups(self.grid.0, self.grid.1, 1);
    }
}

/// Records `dispatches` into one compute pass of `encoder`, optionally timed.
pub fn record_pass(
    encoder: &mut wgpu::CommandEncoder,
    dispatches: &[Dispatch],
    timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("sparq"),
        timestamp_writes,
    });
    for d in dispatches {
        d.record(&mut pass);
    }
}
