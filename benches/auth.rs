//! Bearer tokens: every order placement verifies one (HS256 JWT).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use actors::auth::TokenService;

fn tokens(c: &mut Criterion) {
    let service = TokenService::new(b"ordersaga-bench-secret-0123456789abcdef", "ordersaga", 5, true);
    let roles = vec!["buyer".to_owned()];
    let token = service
        .issue("lt-3f9a1c2e-u07", &roles, Duration::from_secs(3_600), true)
        .map(|t| t.access_token)
        .unwrap_or_default();
    c.bench_function("auth/verify", |b| b.iter(|| service.verify(black_box(&token))));
    let forged = format!("{}x", &token[..token.len() - 1]);
    c.bench_function("auth/verify (bad signature)", |b| {
        b.iter(|| service.verify(black_box(&forged)))
    });
    c.bench_function("auth/issue", |b| {
        b.iter(|| {
            service.issue(
                black_box("lt-3f9a1c2e-u07"),
                &roles,
                Duration::from_secs(3_600),
                true,
            )
        })
    });
}

criterion_group!(benches, tokens);
criterion_main!(benches);
