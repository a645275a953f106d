//! The GPU sampler of endpoint_load: NVIDIA GPUs through NVML, loaded at run time.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// What the GPU sampler found: NVIDIA GPUs through NVML (loaded at run time), sampled every
/// 500 ms on its own thread during the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GpuReport {
    pub found: bool,
    pub note: String,
    pub devices: u32,
    pub samples: usize,
    /// GPU utilisation averaged over devices, per sample: mean and max over the run.
    pub utilization_mean_pct: Option<f64>,
    pub utilization_max_pct: Option<f64>,
    /// Memory used, summed over devices: the most seen, and the total there is.
    pub memory_used_max_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
}

/// Samples NVML until stopped.
pub(super) struct GpuSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<GpuReport>,
}

impl GpuSampler {
    pub(super) fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let nvml = match nvml_wrapper::Nvml::init() {
                Ok(n) => n,
                Err(e) => {
                    return GpuReport {
                        note: format!("no NVIDIA GPU found (NVML: {e})"),
                        ..GpuReport::default()
                    }
                }
            };
            let devices = nvml.device_count().unwrap_or(0);
            if devices == 0 {
                return GpuReport {
                    note: "NVML loaded, but no NVIDIA GPU found".into(),
                    ..GpuReport::default()
                };
            }
            let (mut utils, mut mem_max) = (Vec::new(), 0u64);
            let total;
            loop {
                let (mut util, mut used, mut tot) = (0.0, 0u64, 0u64);
                for i in 0..devices {
                    if let Ok(d) = nvml.device_by_index(i) {
                        util += d.utilization_rates().map_or(0.0, |u| f64::from(u.gpu));
                        if let Ok(m) = d.memory_info() {
                            used += m.used;
                            tot += m.total;
                        }
                    }
                }
                utils.push(util / f64::from(devices));
                mem_max = mem_max.max(used);
                if flag.load(std::sync::atomic::Ordering::Acquire) {
                    total = tot;
                    break;
                }
                std::thread::park_timeout(Duration::from_millis(500));
            }
            GpuReport {
                found: true,
                note: format!("{devices} NVIDIA GPU(s), sampled every 500 ms through NVML"),
                devices,
                samples: utils.len(),
                utilization_mean_pct: Some(utils.iter().sum::<f64>() / utils.len().max(1) as f64),
                utilization_max_pct: utils.iter().copied().reduce(f64::max),
                memory_used_max_bytes: Some(mem_max),
                memory_total_bytes: Some(total),
            }
        });
        Self { stop, thread }
    }

    pub(super) fn finish(self) -> GpuReport {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.thread().unpark();
        self.thread.join().unwrap_or_else(|_| GpuReport {
            note: "the GPU sampler failed".into(),
            ..GpuReport::default()
        })
    }
}
