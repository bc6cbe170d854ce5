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

    async fn responses_carry_a_request_id_and_unknown_routes_answer_404(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let response = app.get("/api/no-such-route", None).await;
        assert!(response.headers().get("x-request-id").is_some());
        assert_problem(response, 404).await;
    }
}
