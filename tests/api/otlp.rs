//! OTLP export, in a build with `--features otlp` (CI runs `cargo test --features otlp --test api otlp::`):
//! a node sends its request spans to the collector `otlp_endpoint` names. The test is that collector, on
//! loopback, and reads the exported spans' shape.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::config::start_server;
use crate::helpers::{Backend, TestDb, serve_on_loopback};

/// Listens at `http://127.0.0.1:PORT/v1/traces` and keeps every JSON body posted there.
fn collector(received: Arc<Mutex<Vec<Value>>>) -> String {
    let base = serve_on_loopback(move |cfg| {
        let received = received.clone();
        cfg.route(
            "/v1/traces",
            actix_web::web::post().to(move |body: actix_web::web::Bytes| {
                let received = received.clone();
                async move {
                    received
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    actix_web::HttpResponse::Ok()
                        .content_type("application/json")
                        .body("{}")
                }
            }),
        );
    });
    format!("{base}/v1/traces")
}

/// The string value of an OTLP attribute list's `key`.
fn attribute<'a>(attributes: &'a Value, key: &str) -> Option<&'a Value> {
    attributes
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[test]
fn a_node_exports_its_request_spans_to_the_collector() {
    ordersaga::runtime::block_on(async {
        let Some(db) = TestDb::create(Backend::Sqlite).await else {
            return;
        };
        let received = Arc::new(Mutex::new(Vec::new()));
        let url = collector(received.clone());
        let env = [
            ("ORDERSAGA_OTLP_ENDPOINT", url.as_str()),
            ("ORDERSAGA_OTLP_SERVICE_NAME", "ordersaga-test"),
        ];
        let mut server = start_server(&db, &env).await;
        let client = crate::helpers::test_client();
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let r = client
            .get(format!("{}/api/stocks", server.address))
            .header("X-Trace-Id", trace)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // A client's W3C trace context: the exported span joins the client's trace, under its span.
        let client_trace = "0af7651916cd43dd8448eb211c80319c";
        let r = client
            .get(format!("{}/api/catalog/products", server.address))
            .header("traceparent", format!("00-{client_trace}-b7ad6b7169203331-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // A SIGTERM sends what is buffered before the node exits.
        server.terminate();
        assert!(
            server.exited(Duration::from_secs(20)).await,
            "the node stops; log in {}",
            server.log.display()
        );

        let exports = received.lock().unwrap().clone();
        let resource_spans: Vec<Value> = exports
            .iter()
            .flat_map(|e| e["resourceSpans"].as_array().cloned().unwrap_or_default())
            .collect();
        assert!(!resource_spans.is_empty(), "the collector received spans");
        for rs in &resource_spans {
            assert_eq!(
                attribute(&rs["resource"]["attributes"], "service.name")
                    .and_then(|v| v["stringValue"].as_str()),
                Some("ordersaga-test")
            );
        }
        let spans: Vec<&Value> = resource_spans
            .iter()
            .flat_map(|rs| rs["scopeSpans"].as_array().into_iter().flatten())
            .flat_map(|ss| ss["spans"].as_array().into_iter().flatten())
            .collect();
        let request = spans
            .iter()
            .find(|s| {
                s["name"] == "HTTP request"
                    && attribute(&s["attributes"], "http.route").and_then(|v| v["stringValue"].as_str())
                        == Some("/api/stocks")
            })
            .unwrap_or_else(|| panic!("a span of GET /api/stocks among {spans:?}"));
        let attributes = &request["attributes"];
        assert_eq!(
            attribute(attributes, "http.method").and_then(|v| v["stringValue"].as_str()),
            Some("GET")
        );
        assert_eq!(
            attribute(attributes, "trace_id").and_then(|v| v["stringValue"].as_str()),
            Some(trace)
        );
        let status = attribute(attributes, "http.status_code").expect("the status is recorded");
        assert!(
            status["intValue"] == "200" || status["intValue"] == 200,
            "{status}"
        );
        let trace_id = request["traceId"].as_str().unwrap();
        assert_eq!(trace_id.len(), 32, "a W3C trace id: {trace_id}");
        assert!(request["startTimeUnixNano"].is_string() || request["startTimeUnixNano"].is_number());

        let joined = spans
            .iter()
            .find(|s| {
                attribute(&s["attributes"], "http.route").and_then(|v| v["stringValue"].as_str())
                    == Some("/api/catalog/products")
            })
            .unwrap_or_else(|| panic!("a span of GET /api/catalog/products among {spans:?}"));
        assert_eq!(joined["traceId"], client_trace, "the client's trace");
        assert_eq!(
            joined["parentSpanId"], "b7ad6b7169203331",
            "under the client's span"
        );
        assert_eq!(
            attribute(&joined["attributes"], "trace_id").and_then(|v| v["stringValue"].as_str()),
            Some(client_trace)
        );
    })
    .unwrap();
}
