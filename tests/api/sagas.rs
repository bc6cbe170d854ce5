//! Saga behaviour beyond the happy path: deadlines, late results, memory, inspection.

use std::time::Duration;

use actors::saga::InMemory;
use serde_json::Value;

use crate::helpers::{assert_problem, eventually, line, spawn_app, spawn_app_with};
use crate::on_every_backend;

on_every_backend! {
    async fn a_payment_that_misses_its_deadline_is_compensated_and_its_late_result_ignored(backend) {
        let Some(app) = spawn_app_with(backend, |s| {
            s.saga.payment_timeout_seconds = 1;
            s.payment.latency_ms = 2_500;
        })
        .await else { return };
        app.set_stock("SKU-T", 4).await;
        let order = app.order("u-1", vec![line("SKU-T", 3, "7.00")]).await;
        let id = order["orderId"].as_str().unwrap();
        let ended = app.ended(id).await;
        assert_eq!(ended["status"], "FAILED");
        assert_eq!(ended["failureReason"], "PAYMENT_TIMEOUT");
        assert_eq!(app.stock("SKU-T").await, (4, 0));
        // The gateway answers after the deadline: recorded in the history, changing nothing.
        let saga = eventually(Duration::from_secs(20), "the late payment result in the history", || async {
            let saga = app.saga(id).await;
            let late = saga["history"].as_array()?.iter().any(|h| {
                h["eventType"] == "PaymentSucceeded" && h["fromState"] == "COMPENSATED" && h["toState"] == "COMPENSATED"
            });
            late.then_some(saga)
        })
        .await;
        assert_eq!(saga["state"], "COMPENSATED");
        let timed_out = saga["history"].as_array().unwrap().iter().find(|h| h["eventType"] == "PaymentTimedOut").unwrap();
        assert_eq!(timed_out["fromState"], "AWAITING_PAYMENT");
        assert_eq!(timed_out["toState"], "COMPENSATING");
        assert_eq!(app.stock("SKU-T").await, (4, 0), "the late success did not take the stock again");
        let status: Value = app.get(&format!("/api/orders/{id}"), Some(&app.admin_token().await)).await.json().await.unwrap();
        assert_eq!(status["status"], "FAILED");
    }

    async fn ended_sagas_leave_memory_and_running_ones_stay(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.payment.latency_ms = 60_000).await else { return };
        app.set_stock("SKU-M", 10).await;
        let waiting = app.order("u-1", vec![line("SKU-M", 1, "1")]).await;
        let failing = app.order("u-1", vec![line("NOPE", 1, "1")]).await;
        app.ended(failing["orderId"].as_str().unwrap()).await;
        let id = waiting["orderId"].as_str().unwrap().to_owned();
        eventually(Duration::from_secs(10), "the order to await its payment", || async {
            (app.saga(&id).await["state"] == "AWAITING_PAYMENT").then_some(())
        })
        .await;
        let in_memory = eventually(Duration::from_secs(10), "one saga actor in memory", || async {
            let n = app.state.engine.sagas.send(InMemory).await.ok()?;
            (n == 1).then_some(n)
        })
        .await;
        assert_eq!(in_memory, 1, "the waiting saga has an actor, the failed one is gone");
    }

    async fn admins_list_sagas_with_counts_per_state(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-L", 1).await;
        let ok = app.order("u-1", vec![line("SKU-L", 1, "1")]).await;
        let short = app.order("u-2", vec![line("SKU-L", 1, "1")]).await;
        app.ended(ok["orderId"].as_str().unwrap()).await;
        app.ended(short["orderId"].as_str().unwrap()).await;
        let admin = app.admin_token().await;
        let page: Value = app.get("/api/sagas?page=0&size=10", Some(&admin)).await.json().await.unwrap();
        assert_eq!(page["totalElements"], 2);
        assert_eq!(page["counts"]["COMPLETED"], 1);
        assert_eq!(page["counts"]["FAILED"], 1);
        assert_eq!(page["counts"]["AWAITING_PAYMENT"], 0);
        let failed: Value = app.get("/api/sagas?state=FAILED", Some(&admin)).await.json().await.unwrap();
        assert_eq!(failed["items"].as_array().unwrap().len(), 1);
        assert_eq!(failed["items"][0]["orderId"], short["orderId"]);
        let stuck: Value = app.get("/api/v1/sagas?olderThanSeconds=3600", Some(&admin)).await.json().await.unwrap();
        assert_eq!(stuck["totalElements"], 0, "nothing is an hour old");
        assert_problem(app.get("/api/sagas?state=SLEEPING", Some(&admin)).await, 400).await;
        assert_problem(app.get("/api/sagas?size=1000", Some(&admin)).await, 400).await;
        assert_problem(app.get("/api/sagas", Some(&app.buyer_token("u-1").await)).await, 403).await;
        assert_problem(app.get("/api/sagas", None).await, 401).await;
    }
}
