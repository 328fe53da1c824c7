//! Spans reach an OTLP collector: a fake collector (the real OTLP gRPC
//! service) receives what `strata` exports.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

use crate::support::{Strata, free_port, get_json};

/// One received span: name, its resource's `service.name`, its attributes.
type SpanSeen = (String, String, Vec<(String, String)>);

/// Every span the fake collector received.
#[derive(Debug, Default, Clone)]
struct Received(Arc<Mutex<Vec<SpanSeen>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = self.0.lock().expect("lock");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .map(|kv| {
                            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(Value::StringValue(s)) => s.clone(),
                                other => format!("{other:?}"),
                            };
                            (kv.key.clone(), value)
                        })
                        .collect();
                    received.push((span.name, service.clone(), attributes));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[test]
fn spans_are_exported_over_otlp() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let received = Received::default();
    let port = free_port();
    let collector = received.clone();
    runtime.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector))
            .serve(format!("127.0.0.1:{port}").parse().expect("addr"))
            .await
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut strata = Strata::start(
        dir.path(),
        &[
            "--tracing.otlp-endpoint",
            &endpoint,
            "--tracing.service-name",
            "strata-under-test",
        ],
    );
    let (status, _) = get_json(&strata.url("/api/v1/labels"), None);
    assert_eq!(status, 200);
    // Shutdown flushes the batch exporter.
    assert!(strata.terminate().success());

    let spans = received.0.lock().expect("lock").clone();
    let request_span = spans
        .iter()
        .find(|(name, _, attributes)| {
            name == "http_request"
                && attributes
                    .iter()
                    .any(|(k, v)| k == "route" && v == "/api/v1/labels")
        })
        .unwrap_or_else(|| panic!("no http_request span for /api/v1/labels in {spans:?}"));
    assert_eq!(request_span.1, "strata-under-test");
}
