//! Health and metrics.

use serde_json::Value;

use crate::helpers::{assert_problem, spawn_app};
use crate::on_every_backend;

on_every_backend! {
    async fn live_and_ready_answer_200(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        assert_eq!(app.get("/health/live", None).await.status(), 200);
        let ready = app.get("/health/ready", None).await;
        assert_eq!(ready.status(), 200);
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["checks"]["database"], "up");
    }

    async fn ready_answers_503_when_the_database_is_gone(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.state.db.close_by_ref().await.unwrap();
        let ready = app.get("/health/ready", None).await;
        assert_eq!(ready.status(), 503);
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["checks"]["database"], "down");
        assert_eq!(app.get("/health/live", None).await.status(), 200);
    }

    async fn metrics_are_prometheus_text(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.get("/api/stocks", None).await;
        let response = app.get("/metrics", None).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(text.contains("# TYPE http_requests_total counter"), "{text}");
        assert!(text.contains("route=\"/api/stocks\""), "{text}");
    }

    async fn the_spring_actuator_paths_answer_health_info_and_metrics(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let liveness = app.get("/actuator/health/liveness", None).await;
        assert_eq!(liveness.status(), 200);
        assert_eq!(liveness.json::<Value>().await.unwrap()["status"], "UP");
        for path in ["/actuator/health", "/actuator/health/readiness"] {
            let ready = app.get(path, None).await;
            assert_eq!(ready.status(), 200, "{path}");
            let body: Value = ready.json().await.unwrap();
            assert_eq!(body["status"], "UP", "{path}: {body}");
            assert_eq!(body["checks"]["database"], "up", "{path}: {body}");
        }
        let info: Value = app.get("/actuator/info", None).await.json().await.unwrap();
        assert_eq!(info["build"]["version"], env!("CARGO_PKG_VERSION"), "{info}");
        assert_eq!(info["app"]["name"], "ordersaga", "{info}");
        app.get("/api/stocks", None).await;
        let prometheus = app.get("/actuator/prometheus", None).await;
        assert_eq!(prometheus.status(), 200);
        assert!(prometheus.text().await.unwrap().contains("# TYPE http_requests_total counter"));

        app.state.db.close_by_ref().await.unwrap();
        let down = app.get("/actuator/health", None).await;
        assert_eq!(down.status(), 503);
        assert_eq!(down.json::<Value>().await.unwrap()["status"], "DOWN");
        assert_eq!(app.get("/actuator/health/liveness", None).await.status(), 200);
    }

    async fn a_valid_client_trace_id_is_echoed_and_an_invalid_one_replaced(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let traced = app.client.get(app.url("/actuator/health")).header("X-Trace-Id", "demo-trace-001").send().await.unwrap();
        assert_eq!(traced.headers()["x-trace-id"], "demo-trace-001");
        for bad in ["two words", "<script>", &"x".repeat(65)] {
            let response = app.client.get(app.url("/api/stocks")).header("X-Trace-Id", bad).send().await.unwrap();
            assert_eq!(response.status(), 200, "an invalid trace id is not an error: {bad}");
            let echoed = response.headers()["x-trace-id"].to_str().unwrap().to_owned();
            assert_eq!(echoed, response.headers()["x-request-id"].to_str().unwrap(), "replaced by the request id: {bad}");
        }
        let untraced = app.get("/api/stocks", None).await;
        assert_eq!(untraced.headers()["x-trace-id"], untraced.headers()["x-request-id"]);
    }

    async fn a_w3c_traceparent_sets_the_orders_trace_and_one_goes_back(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("TP-1", 5).await;
        let buyer = app.buyer_token("tp-buyer").await;
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let placed = app.client.post(app.url("/api/orders")).bearer_auth(&buyer)
            .header("Idempotency-Key", "tp-1")
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .json(&serde_json::json!({"userId": "tp-buyer", "items": [crate::helpers::line("TP-1", 1, "1.00")]}))
            .send().await.unwrap();
        assert_eq!(placed.status(), 201);
        assert_eq!(placed.headers()["x-trace-id"], trace);
        let answered = placed.headers()["traceparent"].to_str().unwrap().to_owned();
        assert_eq!(actors::trace::parse_traceparent(&answered).as_deref(), Some(trace), "the same trace, this node's span");
        assert!(!answered.contains("00f067aa0ba902b7"), "a span id of the node's own");
        let order: Value = placed.json().await.unwrap();
        assert_eq!(order["traceId"], trace);
        let saga = app.saga(order["orderId"].as_str().unwrap()).await;
        assert_eq!(saga["traceId"], trace);

        // X-Trace-Id wins over traceparent; a malformed traceparent is ignored.
        let both = app.client.get(app.url("/api/stocks")).header("X-Trace-Id", "demo-trace-001")
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01")).send().await.unwrap();
        assert_eq!(both.headers()["x-trace-id"], "demo-trace-001");
        assert!(both.headers().get("traceparent").is_none(), "demo-trace-001 has no W3C form");
        let malformed = app.client.get(app.url("/api/stocks")).header("traceparent", "00-zz-00-01").send().await.unwrap();
        assert_eq!(malformed.headers()["x-trace-id"], malformed.headers()["x-request-id"]);
        // A request id (a UUID) is a W3C trace id without its dashes.
        let request_id = malformed.headers()["x-request-id"].to_str().unwrap().replace('-', "");
        let parent = malformed.headers()["traceparent"].to_str().unwrap();
        assert_eq!(actors::trace::parse_traceparent(parent), Some(request_id));
    }

    async fn the_release_audit_dashboard_answers_under_the_seeds_path_too(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let page = app.get("/dashboard/release-audit", None).await;
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("Export CSV"));
    }

    async fn responses_carry_a_request_id_and_unknown_routes_answer_404(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let response = app.get("/api/no-such-route", None).await;
        assert!(response.headers().get("x-request-id").is_some());
        assert_problem(response, 404).await;
    }
}
