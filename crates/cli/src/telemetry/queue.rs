//! The span export queue, bounded and counted: the SDK's batch processor behind a gate that
//! knows how many spans are waiting (queued or in the export under way), so that a span that
//! would overflow the bound is dropped *and counted* here — the SDK keeps its own drop count
//! private. Every outcome lands in [`aether_runtime::telemetry::SPAN_EXPORT`]: exported,
//! dropped at a full queue, or lost to failing exports (in a failed export, or refused during the
//! back-off that follows one); the first loss logs one warning.
//!
//! After a failed export the gate drops finished spans at once for a back-off window
//! (`backoff`), counted as lost to failing exports, rather than queueing them for an exporter that
//! cannot deliver them; the first batch after the window probes the collector again.
//!
//! The gate never waits: `on_end` is an atomic load, an atomic add and, when over the bound, an
//! atomic subtract (and a clock read, from a failed export until an export delivers).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_runtime::telemetry::SPAN_EXPORT;
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;

use super::backoff::Backoff;

/// Spans waiting: queued in the batch processor or in the export under way.
#[derive(Debug, Default)]
struct Waiting(AtomicUsize);

/// The gate in front of the batch processor.
#[derive(Debug)]
pub struct CountedQueue {
    inner: BatchSpanProcessor,
    waiting: Arc<Waiting>,
    backoff: Arc<Backoff>,
    capacity: usize,
}

/// The exporter behind the batch processor: counts what each export delivered or lost.
#[derive(Debug)]
pub struct CountedExporter<E> {
    inner: E,
    waiting: Arc<Waiting>,
    backoff: Arc<Backoff>,
}

/// The first back-off window after a failed export.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest window (it doubles while the probe after each window fails): after the collector
/// returns, spans flow again within this and one batch.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// A bounded, counted batch export of `exporter` with room for `capacity` spans (the SDK's
/// queue is given the same bound, so it never drops one behind the gate's back).
pub fn counted<E: SpanExporter + 'static>(exporter: E, capacity: usize) -> CountedQueue {
    with_backoff(exporter, capacity, Backoff::new(BACKOFF_FIRST, BACKOFF_MAX))
}

fn with_backoff<E: SpanExporter + 'static>(exporter: E, capacity: usize, backoff: Backoff) -> CountedQueue {
    let capacity = capacity.max(1);
    let waiting = Arc::new(Waiting::default());
    let backoff = Arc::new(backoff);
    let batch = opentelemetry_sdk::trace::BatchConfigBuilder::default()
        .with_max_queue_size(capacity)
        .build();
    let inner = BatchSpanProcessor::builder(CountedExporter {
        inner: exporter,
        waiting: Arc::clone(&waiting),
        backoff: Arc::clone(&backoff),
    })
    .with_batch_config(batch)
    .build();
    SPAN_EXPORT.capacity.store(capacity as u64, Ordering::Relaxed);
    CountedQueue {
        inner,
        waiting,
        backoff,
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
        if self.backoff.refusing() {
            lost(&SPAN_EXPORT.dropped_export_failed, 1);
            return;
        }
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
                self.backoff.succeeded();
                SPAN_EXPORT.exported.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.backoff.failed();
                lost(&SPAN_EXPORT.dropped_export_failed, n as u64);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
    use opentelemetry::InstrumentationScope;
    use opentelemetry_sdk::error::OTelSdkError;

    /// An exporter whose collector is up or down, counting the spans it was handed.
    #[derive(Debug, Default)]
    struct Collector {
        up: AtomicBool,
        handed: AtomicUsize,
    }

    #[derive(Debug)]
    struct Exporter(Arc<Collector>);

    impl SpanExporter for Exporter {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.handed.fetch_add(batch.len(), Ordering::SeqCst);
            if self.0.up.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(OTelSdkError::InternalFailure("connection refused".into()))
            }
        }
    }

    fn span() -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "chat sim".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::default(),
        }
    }

    fn lost() -> u64 {
        SPAN_EXPORT.dropped_export_failed.load(Ordering::SeqCst)
    }

    #[test]
    fn after_a_failed_export_finished_spans_are_dropped_and_counted_not_queued() {
        let collector = Arc::new(Collector::default());
        // A window longer than any test: the gate's side of the back-off, not its timing
        // (`backoff`'s own tests walk the windows on a given clock).
        let hour = Duration::from_secs(3600);
        let queue = with_backoff(Exporter(Arc::clone(&collector)), 64, Backoff::new(hour, hour));
        let before = lost();
        for _ in 0..5 {
            queue.on_end(span());
        }
        let _ = queue.force_flush(); // the export's error
        assert_eq!(collector.handed.load(Ordering::SeqCst), 5, "the first batch is tried");
        assert_eq!(lost() - before, 5, "and lost, counted");

        collector.up.store(true, Ordering::SeqCst);
        for _ in 0..7 {
            queue.on_end(span());
        }
        assert_eq!(
            queue.waiting.0.load(Ordering::SeqCst),
            0,
            "nothing queued in the window"
        );
        queue.force_flush().unwrap();
        assert_eq!(
            collector.handed.load(Ordering::SeqCst),
            5,
            "nothing reached the exporter"
        );
        assert_eq!(lost() - before, 12, "every span of the window is counted as lost");
    }

    #[test]
    fn spans_queue_and_export_while_the_collector_answers() {
        let collector = Arc::new(Collector {
            up: AtomicBool::new(true),
            ..Collector::default()
        });
        let queue = counted(Exporter(Arc::clone(&collector)), 64);
        for _ in 0..10 {
            queue.on_end(span());
        }
        queue.force_flush().unwrap();
        assert_eq!(collector.handed.load(Ordering::SeqCst), 10);
        assert_eq!(queue.waiting.0.load(Ordering::SeqCst), 0);
    }
}
