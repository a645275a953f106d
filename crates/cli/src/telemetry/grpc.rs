//! OTLP over gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`): the SDK's tonic exporters, driven by a
//! runtime of their own. The batch span processor and the periodic metric reader export from
//! their own threads with `futures::executor::block_on`, where tonic's futures, which need a tokio
//! reactor, would panic ("there is no reactor running"); so each export is run to completion on a
//! one-worker runtime, `otlp-grpc`, which is not one of the async workers that run turns.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tokio::runtime::Runtime;

/// The exporters' own runtime.
pub fn runtime() -> std::io::Result<Arc<Runtime>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-grpc")
        .enable_all()
        .build()
        .map(Arc::new)
}

/// An exporter whose exports run on `rt` (built inside it: tonic's channel needs its context).
#[derive(Debug)]
pub struct OnRuntime<E> {
    inner: E,
    rt: Arc<Runtime>,
}

impl<E> OnRuntime<E> {
    /// The exporter `build` makes inside `rt`'s context, exporting on `rt`.
    pub fn build<Er>(rt: &Arc<Runtime>, build: impl FnOnce() -> Result<E, Er>) -> Result<Self, Er> {
        let inner = {
            let _in = rt.enter();
            build()?
        };
        Ok(Self {
            inner,
            rt: Arc::clone(rt),
        })
    }
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        std::future::ready(self.rt.block_on(self.inner.export(batch)))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _in = self.rt.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _in = self.rt.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for OnRuntime<E> {
    fn export(&self, metrics: &ResourceMetrics) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        std::future::ready(self.rt.block_on(self.inner.export(metrics)))
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _in = self.rt.enter();
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _in = self.rt.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
