//! [`Sampler`]: the task that reads a run's gauges at the end of each interval (in flight, the
//! process's RSS, CPU % and allocated bytes with the harness's own share of them, and what the
//! target says of itself: the server's side over HTTP, the runtime's live sessions in process)
//! into the [`Series`].

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::{Gauges, Series, TargetReading};

/// The task that reads the gauges at the end of each interval: in-flight, the process's RSS and
/// CPU %, and what the `target` reading returns (the server's side over HTTP, or the runtime's
/// live sessions in process).
pub struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `series`; `target` reads what the target says of itself (or nothing),
    /// and `progress` hears the figures of the last complete interval.
    pub fn start<F, Fut>(
        series: std::sync::Arc<Series>,
        target: F,
        progress: std::sync::Arc<dyn crate::progress::Progress>,
    ) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = TargetReading> + Send,
    {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let clock = series.clock;
            let mut bucket = clock.bucket(Instant::now());
            let (mut last, mut cpu_before) = (Instant::now(), crate::resources::cpu_seconds());
            let mut server_before: Option<(Instant, f64)> = None;
            loop {
                let last_reading = tokio::select! {
                    _ = tokio::time::sleep_until(clock.end_of(bucket)) => false,
                    _ = &mut stopped => true,
                };
                let in_flight = series.in_flight.load(Ordering::Relaxed);
                // /proc reads are file I/O: on a blocking thread.
                let (rss, rss_file, cpu, heap, sqlite) = tokio::task::spawn_blocking(|| {
                    (
                        crate::resources::rss_bytes(),
                        crate::resources::rss_file_bytes(),
                        crate::resources::cpu_seconds(),
                        aether_runtime::stats::heap_allocated(),
                        aether_store::sqlite_memory(),
                    )
                })
                .await
                .unwrap_or((None, None, cpu_before, Default::default(), None));
                let now = Instant::now();
                let wall = now.duration_since(last).as_secs_f64().max(1e-3);
                let TargetReading {
                    mut server,
                    sessions_live,
                } = target().await;
                if let Some(s) = server.as_mut() {
                    if let (Some(cpu_now), Some((at, before))) = (s.cpu_seconds, server_before) {
                        let wall = now.duration_since(at).as_secs_f64().max(1e-3);
                        s.cpu_pct = Some(((cpu_now - before) / wall * 100.0).max(0.0));
                    }
                    server_before = s.cpu_seconds.map(|c| (now, c));
                }
                series.gauge(
                    bucket,
                    Gauges {
                        in_flight: Some(in_flight),
                        rss_bytes: rss,
                        rss_file_bytes: rss_file,
                        heap_bytes: heap.total(),
                        harness_bytes: heap
                            .total()
                            .map(|_| crate::resources::series_held_bytes() + crate::stats::histograms_held_bytes()),
                        malloc_bytes: heap.malloc,
                        sqlite_bytes: sqlite.map(|m| m.used),
                        sqlite_cache_bytes: sqlite.map(|m| m.page_cache),
                        cpu_pct: Some(((cpu - cpu_before) / wall * 100.0).max(0.0)),
                        sessions_live,
                        server: server.map(Box::new),
                    },
                );
                if last_reading {
                    return;
                }
                // Workers hand an interval over when they move on: the one before this is whole.
                if let Some(previous) = bucket.checked_sub(1) {
                    progress.recent(&series.recent(previous));
                }
                (last, cpu_before) = (now, cpu);
                bucket = clock.bucket(Instant::now()).max(bucket + 1);
            }
        });
        Self { stop, task }
    }

    /// Takes the last reading (of the interval in progress) and stops.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
