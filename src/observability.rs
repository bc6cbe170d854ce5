//! Logs, request ids and Prometheus metrics.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_actix_web::RequestId;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};

/// Log filter when `RUST_LOG` is unset.
const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,sea_orm=warn,lapin=warn";
/// Histogram buckets of every `*_seconds` metric.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the global log subscriber (`RUST_LOG` filters; JSON lines when asked) and, in a build with
/// the `otlp` feature, the export of spans to `otlp_endpoint`. Later calls do nothing. Keep the answer
/// until the process ends: dropping it sends the spans still buffered.
pub fn init_tracing(settings: &Settings) -> Telemetry {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let (export, telemetry) = otlp::layer(settings);
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(export);
    let _ = match settings.log_format {
        LogFormat::Json => registry.with(lines.json().flatten_event(true)).try_init(),
        LogFormat::Text => registry.with(lines).try_init(),
    };
    telemetry
}

pub use otlp::Telemetry;

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use crate::config::Settings;

    /// The span exporter; dropping it flushes what is buffered.
    pub struct Telemetry(Option<SdkTracerProvider>);

    impl Drop for Telemetry {
        fn drop(&mut self) {
            if let Some(provider) = self.0.take()
                && let Err(e) = provider.shutdown()
            {
                eprintln!("ordersaga: the last spans were not exported: {e}");
            }
        }
    }

    /// Makes the exported root span a child of the client's span when the request's trace is the
    /// client's W3C trace (it sent a valid `traceparent` and no `X-Trace-Id` of its own).
    pub fn join_client_trace(span: &tracing::Span, trace: &str, traceparent: Option<&str>) {
        use opentelemetry::propagation::TextMapPropagator;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let Some(header) =
            traceparent.filter(|h| actors::trace::parse_traceparent(h).as_deref() == Some(trace))
        else {
            return;
        };
        let carrier = std::collections::HashMap::from([("traceparent".to_owned(), header.to_owned())]);
        let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(parent);
    }

    pub fn layer<S>(
        settings: &Settings,
    ) -> (
        Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>,
        Telemetry,
    )
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let Some(endpoint) = &settings.otlp_endpoint else {
            return (None, Telemetry(None));
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(endpoint.as_str())
            .build();
        let exporter = match exporter {
            Ok(exporter) => exporter,
            Err(e) => {
                eprintln!("ordersaga: otlp_endpoint: spans will not be exported: {e}");
                return (None, Telemetry(None));
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.otlp_service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("ordersaga");
        (
            Some(tracing_opentelemetry::layer().with_tracer(tracer)),
            Telemetry(Some(provider)),
        )
    }
}

#[cfg(not(feature = "otlp"))]
mod otlp {
    use crate::config::Settings;

    /// Nothing to flush in a build without OTLP export (`otlp_endpoint` is refused at start).
    pub struct Telemetry;

    /// Nothing to join without OTLP export.
    pub fn join_client_trace(_: &tracing::Span, _: &str, _: Option<&str>) {}

    pub fn layer(_: &Settings) -> (Option<tracing_subscriber::layer::Identity>, Telemetry) {
        (None, Telemetry)
    }
}

/// The process-wide Prometheus recorder (installed on first use; one per process, shared by every app
/// in it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Query parameters whose values never reach a log line.
const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "token",
    "id_token",
    "refresh_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
    "client_secret",
    "code",
    "signature",
    "sig",
    "auth",
    "authorization",
    "jwt",
];

/// The request target with the values of token-like query parameters replaced by `[REDACTED]`.
pub fn redacted_target(path: &str, query: Option<&str>) -> String {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return path.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decoded_lowercase(name);
            let secret = SECRET_PARAMS.contains(&decoded.as_str())
                || decoded.ends_with("_token")
                || decoded.ends_with("token")
                || decoded.ends_with("password")
                || decoded.ends_with("secret");
            if secret && !value.is_empty() {
                format!("{name}=[REDACTED]")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// A query parameter's name as a server reads it (`%5F` is `_`, `+` a space), in lower case.
fn percent_decoded_lowercase(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' if i + 2 < bytes.len() => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

/// The root span of every request, as tracing-actix-web's default but with the request target
/// redacted: a token passed as `?access_token=` must not end up in the logs.
pub struct RedactedRootSpan;

impl tracing_actix_web::RootSpanBuilder for RedactedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> tracing::Span {
        let target = redacted_target(request.path(), Some(request.query_string()));
        let route = request.match_pattern().unwrap_or_else(|| "default".to_owned());
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let client = request
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let trace = settle_trace(request);
        let span = tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %route,
            http.target = %target,
            http.client_ip = %client,
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            request_id = %request_id,
            trace_id = %trace,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        );
        otlp::join_client_trace(&span, &trace, incoming_traceparent(request));
        span
    }

    fn on_request_end<B: MessageBody>(
        span: tracing::Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let failure = match outcome {
            Ok(response) => response.response().error().map(|error| {
                let retry = response.headers().contains_key(header::RETRY_AFTER);
                (error.to_string(), response.status(), retry)
            }),
            Err(error) => {
                let refusal = error.error_response();
                let retry = refusal.headers().contains_key(header::RETRY_AFTER);
                Some((error.to_string(), refusal.status(), retry))
            }
        };
        tracing_actix_web::DefaultRootSpanBuilder::on_request_end(span.clone(), outcome);
        if let Some((message, status, retry)) = failure {
            let _entered = span.enter();
            match failure_level(status, retry) {
                FailureLevel::Refusal => tracing::debug!(status = status.as_u16(), "refused: {message}"),
                FailureLevel::Client => tracing::warn!(status = status.as_u16(), "request failed: {message}"),
                FailureLevel::Server => {
                    tracing::error!(status = status.as_u16(), "request failed: {message}")
                }
            }
        }
    }
}

/// How loudly a failed request is logged.
#[derive(Debug, PartialEq, Eq)]
enum FailureLevel {
    /// A planned refusal that tells the client when to come back (`429`, or a `503` such as
    /// `/problems/overloaded` with `Retry-After`): expected under load, counted in
    /// `http_requests_total`, logged at debug so that shedding load does not flood the log.
    Refusal,
    /// Another `4xx`: the client's mistake.
    Client,
    /// A `5xx` without `Retry-After`: the node's.
    Server,
}

fn failure_level(status: StatusCode, retry_after: bool) -> FailureLevel {
    if status == StatusCode::TOO_MANY_REQUESTS || (retry_after && status == StatusCode::SERVICE_UNAVAILABLE) {
        FailureLevel::Refusal
    } else if status.is_client_error() {
        FailureLevel::Client
    } else {
        FailureLevel::Server
    }
}

static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
static TRACE_ID_HEADER: HeaderName = HeaderName::from_static("x-trace-id");
static TRACEPARENT_HEADER: HeaderName = HeaderName::from_static("traceparent");
/// Longest trace id taken from a client (the width of the `trace_id` columns).
pub const MAX_TRACE_ID_LENGTH: usize = 64;

/// The trace id of a request: the client's `X-Trace-Id` when it is valid, else the trace id of a valid
/// W3C `traceparent`, else the request id. It becomes the `trace_id` of the order and of every event the
/// request causes, and of the request's log lines.
#[derive(Clone, Debug)]
pub struct RequestTrace(pub String);

/// A client's trace id is taken when it is 1–64 characters of `A-Za-z0-9-_.:` (a UUID, a W3C trace id,
/// `demo-trace-001`); anything else is replaced by the request id, not refused.
pub fn valid_trace_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_TRACE_ID_LENGTH
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The request's trace id ([`RequestTrace`]): settled once, when its root span starts, and kept in the
/// request's extensions.
fn settle_trace(req: &ServiceRequest) -> String {
    if let Some(RequestTrace(trace)) = req.extensions().get::<RequestTrace>() {
        return trace.clone();
    }
    let given = req
        .headers()
        .get(&TRACE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| valid_trace_id(v))
        .map(str::to_owned);
    let trace = given
        .or_else(|| incoming_traceparent(req).and_then(actors::trace::parse_traceparent))
        .or_else(|| req.extensions().get::<RequestId>().map(|id| id.to_string()))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestTrace(trace.clone()));
    trace
}

/// The client's `traceparent` header, as sent.
fn incoming_traceparent(req: &ServiceRequest) -> Option<&str> {
    req.headers()
        .get(&TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok())
}

/// Middleware: settles the request's trace id ([`RequestTrace`]) and answers it in `X-Trace-Id`, the
/// seed system's header, on every response, and as `traceparent` (with a span id of this node's) when it
/// has a W3C form.
pub async fn trace_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let trace = settle_trace(&req);
    let mut response = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&trace) {
        response.headers_mut().insert(TRACE_ID_HEADER.clone(), value);
    }
    if let Some(value) = actors::trace::traceparent(&trace).and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert(TRACEPARENT_HEADER.clone(), value);
    }
    Ok(response)
}

/// Middleware: answers the request id in `X-Request-Id` and records `http_requests_total` and
/// `http_request_duration_seconds` by method, route pattern and status.
pub async fn http_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    let mut response = match next.call(req).await {
        Ok(response) => response,
        Err(error) => {
            // Answered by actix from the error (a request past its deadline, say).
            let status = error.as_response_error().status_code().as_u16().to_string();
            metrics::counter!("http_requests_total", "method" => method.clone(), "route" => "unanswered", "status" => status)
                .increment(1);
            metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => "unanswered")
                .record(started.elapsed().as_secs_f64());
            return Err(error);
        }
    };
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert(REQUEST_ID_HEADER.clone(), id);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::{FailureLevel, failure_level, redacted_target, valid_trace_id};
    use actix_web::http::StatusCode;

    #[test]
    fn planned_refusals_are_not_logged_as_errors() {
        use FailureLevel::{Client, Refusal, Server};
        for (status, retry_after, level) in [
            // Load shedding and throttling: expected, and the client is told when to come back.
            (StatusCode::SERVICE_UNAVAILABLE, true, Refusal),
            (StatusCode::TOO_MANY_REQUESTS, true, Refusal),
            (StatusCode::TOO_MANY_REQUESTS, false, Refusal),
            // A 503 that does not say when to retry, and any other 5xx, is the node's failure.
            (StatusCode::SERVICE_UNAVAILABLE, false, Server),
            (StatusCode::INTERNAL_SERVER_ERROR, true, Server),
            (StatusCode::UNAUTHORIZED, false, Client),
            (StatusCode::UNPROCESSABLE_ENTITY, false, Client),
        ] {
            assert_eq!(
                failure_level(status, retry_after),
                level,
                "{status} retry-after={retry_after}"
            );
        }
    }

    #[test]
    fn trace_ids_of_clients_are_short_plain_tokens() {
        for good in [
            "demo-trace-001",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "ae7ba57f-7ee9-4243-8aba-86b3028069de",
            "a:b.c_d",
            &"x".repeat(64),
        ] {
            assert!(valid_trace_id(good), "{good}");
        }
        for bad in ["", "two words", "<script>", "é", "a/b", &"x".repeat(65)] {
            assert!(!valid_trace_id(bad), "{bad}");
        }
    }

    #[test]
    fn token_like_query_values_are_redacted() {
        assert_eq!(
            redacted_target("/api/stocks", Some("access_token=eyJ.abc.def&page=2")),
            "/api/stocks?access_token=[REDACTED]&page=2"
        );
        assert_eq!(
            redacted_target(
                "/x",
                Some("Access%5FToken=s3cret&refresh_token=r&id_token=i&apiKey=k&password=p")
            ),
            "/x?Access%5FToken=[REDACTED]&refresh_token=[REDACTED]&id_token=[REDACTED]&apiKey=[REDACTED]&password=[REDACTED]"
        );
        assert_eq!(
            redacted_target("/x", Some("orderId=1&size=20")),
            "/x?orderId=1&size=20"
        );
        assert_eq!(redacted_target("/x", Some("")), "/x");
        assert_eq!(redacted_target("/x", None), "/x");
        assert_eq!(redacted_target("/x", Some("token")), "/x?token");
        assert_eq!(redacted_target("/x", Some("%zz=1&%=2&%é=3")), "/x?%zz=1&%=2&%é=3");
    }
}
