//! The harness's view of a node: the public HTTP API, nothing else.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::LoadtestError;

/// Longest token lifetime asked of the mock issuer; a node that allows less gets asked for its default.
const TOKEN_TTL_SECONDS: u64 = 86_400;
/// Largest page the paged routes serve.
pub const PAGE_SIZE: u64 = 100;
/// Attempts of a read before it counts as failed (reads are retried on transport errors and `5xx`).
const READ_ATTEMPTS: u32 = 5;
/// First pause between two attempts, doubled each time.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between two attempts.
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);

/// A client of one node.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// What the server answered to an order placement.
#[derive(Debug)]
pub enum Placed {
    /// `201` (or `200` for a replay of an earlier attempt of the same request).
    Accepted { order_id: String },
    /// Any other answer after the retries.
    Refused { status: Option<u16>, detail: String },
}

/// An order as `GET /api/orders/{id}` shows it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: String,
    pub status: String,
    #[serde(default)]
    pub items: Vec<LineView>,
    #[serde(default)]
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineView {
    pub sku_id: String,
    pub quantity: i64,
}

/// A saga as `GET /api/sagas` and `GET /api/orders/{id}/saga` show it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaView {
    pub order_id: String,
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
}

/// A page of `GET /api/sagas`, with the counts per state.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaPage {
    pub items: Vec<SagaView>,
    #[serde(default)]
    pub has_next: bool,
    #[serde(default)]
    pub counts: std::collections::BTreeMap<String, u64>,
}

/// A stock row.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockView {
    pub sku_id: String,
    pub available_qty: i64,
    pub reserved_qty: i64,
}

/// One release audit event.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseView {
    pub release_id: String,
    pub order_id: String,
    #[serde(default)]
    pub released_items: Vec<LineView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReleasePage {
    items: Vec<ReleaseView>,
    #[serde(default)]
    has_next: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse {
    access_token: String,
}

/// The answer of a read that may legitimately be absent.
pub enum Found<T> {
    Yes(T),
    /// `404`.
    No,
}

impl Api {
    /// A client for the node at `base` (`http://host:port`), `connections` kept open at most.
    pub fn new(base: &str, connections: usize, request_timeout: Duration) -> Result<Api, LoadtestError> {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| LoadtestError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// A token from the mock issuer.
    pub async fn token(&self, user_id: &str, roles: &[&str]) -> Result<String, LoadtestError> {
        let mut body = json!({"userId": user_id, "roles": roles, "ttlSeconds": TOKEN_TTL_SECONDS});
        for _ in 0..2 {
            let response = self
                .request(Method::POST, "/api/auth/token")
                .json(&body)
                .send()
                .await
                .map_err(|e| unreachable_node(&self.base, e))?;
            match response.status() {
                StatusCode::OK => {
                    let token: TokenResponse = response.json().await.map_err(|e| {
                        LoadtestError::Setup(format!("POST /api/auth/token answered an unexpected body: {e}"))
                    })?;
                    return Ok(token.access_token);
                }
                // The node grants shorter tokens: take its default lifetime.
                StatusCode::BAD_REQUEST if body.get("ttlSeconds").is_some() => {
                    if let Some(map) = body.as_object_mut() {
                        map.remove("ttlSeconds");
                    }
                }
                StatusCode::NOT_FOUND => {
                    return Err(LoadtestError::Setup(
                        "the node's mock token issuer is switched off (POST /api/auth/token answered 404); \
                         the load test needs `auth.mock_issuer = true`"
                            .to_owned(),
                    ));
                }
                status => return Err(refused("POST /api/auth/token", status, response).await),
            }
        }
        Err(LoadtestError::Setup(
            "POST /api/auth/token refused the token request".to_owned(),
        ))
    }

    /// Sets a SKU's available quantity (admin).
    pub async fn set_stock(&self, admin: &str, sku_id: &str, qty: i64) -> Result<(), LoadtestError> {
        let response = self
            .send_with_retries(|| {
                self.request(Method::POST, "/api/stocks")
                    .bearer_auth(admin)
                    .json(&json!({"skuId": sku_id, "availableQty": qty}))
            })
            .await
            .map_err(|e| LoadtestError::Setup(format!("setting the stock of {sku_id}: {e}")))?;
        match response.status() {
            StatusCode::OK => Ok(()),
            status => Err(refused(&format!("POST /api/stocks ({sku_id})"), status, response).await),
        }
    }

    /// Places an order. Transport errors, `429` and `5xx` are retried with the same idempotency key (a
    /// replay returns the order an earlier attempt created, so nothing is placed twice), up to `attempts`.
    pub async fn place_order(&self, token: &str, key: &str, body: &[u8], attempts: u32) -> Placed {
        let mut pause = RETRY_PAUSE;
        let mut last = Placed::Refused {
            status: None,
            detail: "not sent".to_owned(),
        };
        for attempt in 1..=attempts.max(1) {
            let sent = self
                .request(Method::POST, "/api/orders")
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec())
                .send()
                .await;
            let retry = match sent {
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::CREATED || status == StatusCode::OK {
                        #[derive(Deserialize)]
                        #[serde(rename_all = "camelCase")]
                        struct Created {
                            order_id: String,
                        }
                        return match response.json::<Created>().await {
                            Ok(created) => Placed::Accepted {
                                order_id: created.order_id,
                            },
                            Err(e) => Placed::Refused {
                                status: Some(status.as_u16()),
                                detail: format!("unexpected body: {e}"),
                            },
                        };
                    }
                    let retry = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                    last = Placed::Refused {
                        status: Some(status.as_u16()),
                        detail: problem_detail(response).await,
                    };
                    retry
                }
                Err(e) => {
                    last = Placed::Refused {
                        status: None,
                        detail: describe(&e),
                    };
                    true
                }
            };
            if !retry || attempt == attempts {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
        last
    }

    /// One order (as admin).
    pub async fn order(&self, admin: &str, order_id: &str) -> Result<Found<OrderView>, LoadtestError> {
        self.get_optional(admin, &format!("/api/orders/{order_id}"), &[])
            .await
    }

    /// One order's saga (as admin).
    pub async fn saga(&self, admin: &str, order_id: &str) -> Result<Found<SagaView>, LoadtestError> {
        self.get_optional(admin, &format!("/api/orders/{order_id}/saga"), &[])
            .await
    }

    /// A page of sagas, most recently updated first, with the counts per state (admin).
    pub async fn sagas(&self, admin: &str, page: u64, size: u64) -> Result<SagaPage, LoadtestError> {
        let query = [("page", page.to_string()), ("size", size.to_string())];
        match self.get_optional(admin, "/api/sagas", &query).await? {
            Found::Yes(page) => Ok(page),
            Found::No => Err(LoadtestError::Server("GET /api/sagas answered 404".to_owned())),
        }
    }

    /// One SKU's stock.
    pub async fn stock(&self, sku_id: &str) -> Result<Found<StockView>, LoadtestError> {
        self.get_optional("", &format!("/api/stocks/{sku_id}"), &[]).await
    }

    /// Every release event created at or after `from`, newest first across pages (deduplicated by the
    /// caller). `None` when the node has no release audit route (`404`).
    pub async fn release_events(
        &self,
        admin: &str,
        from: DateTime<Utc>,
    ) -> Result<Option<Vec<ReleaseView>>, LoadtestError> {
        let mut events = Vec::new();
        let from = from.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        for page in 0.. {
            let query = [
                ("from", from.clone()),
                ("page", page.to_string()),
                ("size", PAGE_SIZE.to_string()),
            ];
            let result: Found<ReleasePage> = self
                .get_optional(admin, "/api/stocks/release-events", &query)
                .await?;
            match result {
                Found::No => return Ok(None),
                Found::Yes(p) => {
                    let last = p.items.is_empty() || !p.has_next;
                    events.extend(p.items);
                    if last {
                        break;
                    }
                }
            }
        }
        Ok(Some(events))
    }

    /// A GET answered `200` (parsed) or `404`; anything else is an error after the retries.
    async fn get_optional<T: DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Found<T>, LoadtestError> {
        let response = self
            .send_with_retries(|| {
                let request = self.request(Method::GET, path).query(query);
                if token.is_empty() {
                    request
                } else {
                    request.bearer_auth(token)
                }
            })
            .await
            .map_err(|e| LoadtestError::Server(format!("GET {path}: {e}")))?;
        match response.status() {
            StatusCode::OK => {
                response.json::<T>().await.map(Found::Yes).map_err(|e| {
                    LoadtestError::Server(format!("GET {path} answered an unexpected body: {e}"))
                })
            }
            StatusCode::NOT_FOUND => Ok(Found::No),
            status => Err(refused(&format!("GET {path}"), status, response).await),
        }
    }

    /// Sends a request built by `build`, again after transport errors and `5xx`, with a growing pause.
    async fn send_with_retries(&self, build: impl Fn() -> RequestBuilder) -> Result<Response, String> {
        let mut pause = RETRY_PAUSE;
        let mut attempt = 1;
        loop {
            let outcome = build().send().await;
            let retry = match &outcome {
                Ok(r) => r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS,
                Err(_) => true,
            };
            if !retry || attempt >= READ_ATTEMPTS {
                return outcome.map_err(|e| describe(&e));
            }
            attempt += 1;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }
}

/// The `detail` of a problem document, or the start of whatever the body was.
async fn problem_detail(response: Response) -> String {
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => match v.get("detail").and_then(|d| d.as_str()) {
            Some(detail) => detail.to_owned(),
            None => text.chars().take(200).collect(),
        },
        Err(_) => text.chars().take(200).collect(),
    }
}

async fn refused(what: &str, status: StatusCode, response: Response) -> LoadtestError {
    let detail = problem_detail(response).await;
    LoadtestError::Server(format!("{what} answered {status}: {detail}"))
}

fn unreachable_node(base: &str, err: reqwest::Error) -> LoadtestError {
    LoadtestError::Setup(format!(
        "cannot reach the node at {base}: {} (is `ordersaga serve` running there?)",
        describe(&err)
    ))
}

/// A transport error with its cause chain, on one line.
fn describe(err: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if err.is_timeout() {
        text.push_str(" (timed out)");
    }
    text
}
