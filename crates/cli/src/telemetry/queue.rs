//! The span export queue, bounded and counted: the SDK's batch processor behind a gate that
//! knows how many spans are waiting (queued or in the export under way), so that a span that
//! would overflow the bound is dropped *and counted* here — the SDK keeps its own drop count
//! private. Every outcome lands in [`aether_runtime::telemetry::SPAN_EXPORT`]: exported,
//! dropped at a full queue, lost in a failed export; the first loss logs one warning.
//!
//! The gate never waits: `on_end` is an atomic add and, when over the bound, an atomic subtract.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_runtime::telemetry::SPAN_EXPORT;
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;

/// Spans waiting: queued in the batch processor or in the export under way.
#[derive(Debug, Default)]
struct Waiting(AtomicUsize);

/// The gate in front of the batch processor.
#[derive(Debug)]
pub struct CountedQueue {
    inner: BatchSpanProcessor,
    waiting: Arc<Waiting>,
    capacity: usize,
}

/// The exporter behind the batch processor: counts what each export delivered or lost.
#[derive(Debug)]
pub struct CountedExporter<E> {
    inner: E,
    waiting: Arc<Waiting>,
}

/// A bounded, counted batch export of `exporter` with room for `capacity` spans (the SDK's
/// queue is given the same bound, so it never drops one behind the gate's back).
pub fn counted<E: SpanExporter + 'static>(exporter: E, capacity: usize) -> CountedQueue {
    let capacity = capacity.max(1);
    let waiting = Arc::new(Waiting::default());
    let batch = opentelemetry_sdk::trace::BatchConfigBuilder::default()
        .with_max_queue_size(capacity)
        .build();
    let inner = BatchSpanProcessor::builder(CountedExporter {
        inner: exporter,
        waiting: Arc::clone(&waiting),
    })
    .with_batch_config(batch)
    .build();
    SPAN_EXPORT.capacity.store(capacity as u64, Ordering::Relaxed);
    CountedQueue {
        inner,
        waiting,
        capacity,
    }
}

static WARNED: AtomicBool = AtomicBool::new(false);

fn lost(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The first loss warns, once. Called from the exporter's thread and at shutdown: a warning from
/// inside a span's own close (where a queue drop happens) would be swallowed by `tracing`'s
/// re-entrancy guard.
fn warn_once_if_lost() {
    let e = &SPAN_EXPORT;
    let dropped = e.dropped_queue_full.load(Ordering::Relaxed) + e.dropped_export_failed.load(Ordering::Relaxed);
    if dropped > 0 && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            dropped,
            "OpenTelemetry: spans are being dropped (the collector is slow, down or refusing them); \
             turns are not affected. Counted in aether_otel_spans_dropped_total and the perf summary; \
             no further warning"
        );
    }
}

impl SpanProcessor for CountedQueue {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let before = self.waiting.0.fetch_add(1, Ordering::AcqRel);
        if before >= self.capacity {
            self.waiting.0.fetch_sub(1, Ordering::AcqRel);
            lost(&SPAN_EXPORT.dropped_queue_full, 1);
            return;
        }
        SPAN_EXPORT.high_water.fetch_max(before as u64 + 1, Ordering::Relaxed);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let r = self.inner.shutdown_with_timeout(timeout);
        if r.is_err() {
            // Still waiting at the deadline: they will not leave now.
            let left = self.waiting.0.swap(0, Ordering::AcqRel);
            lost(&SPAN_EXPORT.dropped_export_failed, left as u64);
        }
        warn_once_if_lost();
        r
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: SpanExporter> SpanExporter for CountedExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let r = self.inner.export(batch).await;
        self.waiting.0.fetch_sub(n, Ordering::AcqRel);
        match &r {
            Ok(()) => {
                SPAN_EXPORT.exported.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => lost(&SPAN_EXPORT.dropped_export_failed, n as u64),
        }
        warn_once_if_lost();
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
