//! The load of a campaign: a few clients placing orders on every node, each as a careful user would —
//! an error, a `503` or a connection that fails is retried with the same `Idempotency-Key`, on the next
//! node, until the order is answered. What each key came to is recorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::helpers::line;

/// How long a client keeps retrying one key before it records it as unanswered (a node told to keep
/// its backlog small answers `503` until it has caught up, which takes a while on a slow machine).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(300);

/// What became of the keys of one run.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Keys tried.
    pub placed: usize,
    /// Key → order id, for every key answered `201` or `200`.
    pub accepted: HashMap<String, String>,
    /// Keys answered with another status, and the answer: none is expected.
    pub refused: Vec<(String, u16, String)>,
    /// Keys never answered within [`ANSWER_WITHIN`].
    pub unanswered: Vec<String>,
    /// Requests sent again (after a failure) in all.
    pub retries: usize,
    /// The same key answered with two order ids.
    pub conflicting: Vec<String>,
}

/// The running clients.
pub struct Load {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    clients: Vec<JoinHandle<LoadReport>>,
}

/// The SKUs every campaign orders from.
pub const SKUS: [&str; 4] = ["CMP-A", "CMP-B", "CMP-C", "CMP-D"];

impl Load {
    /// `clients` clients placing orders, with keys `tag-<client>-<n>`, as the buyer of `token`, on
    /// `bases` in turn.
    /// Each client waits `pace` after an answered order before the next, so that the load stays near
    /// what the nodes finish rather than piling up a backlog.
    pub fn start(
        bases: Vec<String>,
        token: String,
        user: &str,
        clients: usize,
        pace: Duration,
        tag: &str,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let clients = (0..clients)
            .map(|c| {
                let (stop, accepted, http) = (stop.clone(), accepted.clone(), http.clone());
                let (bases, token, user, tag) =
                    (bases.clone(), token.clone(), user.to_owned(), tag.to_owned());
                tokio::spawn(async move {
                    let mut report = LoadReport::default();
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("{tag}-{c}-{n}");
                        let items = order_lines(c * 7919 + n);
                        n += 1;
                        report.placed += 1;
                        let body = json!({"userId": user, "items": items});
                        let started = Instant::now();
                        let mut attempt = 0usize;
                        loop {
                            let base = &bases[(c + attempt) % bases.len()];
                            let sent = http
                                .post(format!("{base}/api/orders"))
                                .bearer_auth(&token)
                                .header("Idempotency-Key", &key)
                                .json(&body)
                                .send()
                                .await;
                            let retry = match sent {
                                Ok(r) if r.status() == 201 || r.status() == 200 => {
                                    match r
                                        .json::<Value>()
                                        .await
                                        .ok()
                                        .and_then(|b| b["orderId"].as_str().map(str::to_owned))
                                    {
                                        Some(id) => {
                                            if let Some(before) =
                                                report.accepted.insert(key.clone(), id.clone())
                                                && before != id
                                            {
                                                report.conflicting.push(key.clone());
                                            }
                                            accepted.fetch_add(1, Ordering::Relaxed);
                                            false
                                        }
                                        // The body was cut off: ask again.
                                        None => true,
                                    }
                                }
                                Ok(r) if r.status().is_server_error() || r.status() == 429 => true,
                                Ok(r) => {
                                    let status = r.status().as_u16();
                                    report.refused.push((
                                        key.clone(),
                                        status,
                                        r.text().await.unwrap_or_default(),
                                    ));
                                    false
                                }
                                Err(_) => true,
                            };
                            if !retry {
                                break;
                            }
                            if started.elapsed() > ANSWER_WITHIN {
                                report.unanswered.push(key.clone());
                                break;
                            }
                            attempt += 1;
                            report.retries += 1;
                            let pause = (50 * attempt as u64).min(500);
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                        }
                        tokio::time::sleep(pace).await;
                    }
                    report
                })
            })
            .collect();
        Load {
            stop,
            accepted,
            clients,
        }
    }

    /// Orders accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Waits until `more` orders beyond the current count have been accepted (the load goes on, or
    /// has come back after a fault); panics after `timeout`.
    pub async fn progress(&self, more: usize, timeout: Duration, what: &str) {
        let target = self.accepted() + more;
        crate::helpers::eventually(timeout, &format!("{more} orders accepted {what}"), || async {
            (self.accepted() >= target).then_some(())
        })
        .await;
    }

    /// Stops the clients (each finishes the key it is on) and merges their reports.
    pub async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = LoadReport::default();
        for client in self.clients {
            let report = client.await.unwrap();
            all.placed += report.placed;
            all.accepted.extend(report.accepted);
            all.refused.extend(report.refused);
            all.unanswered.extend(report.unanswered);
            all.retries += report.retries;
            all.conflicting.extend(report.conflicting);
        }
        all
    }
}

/// One or two lines of SKUs and quantities that vary with `n`.
fn order_lines(n: usize) -> Vec<Value> {
    let first = SKUS[n % SKUS.len()];
    let quantity = 1 + (n % 3) as i64;
    if n.is_multiple_of(4) {
        let second = SKUS[(n / SKUS.len() + 1 + n) % SKUS.len()];
        if second != first {
            return vec![line(first, quantity, "2.50"), line(second, 1, "4.00")];
        }
    }
    vec![line(first, quantity, "2.50")]
}
