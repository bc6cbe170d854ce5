//! What a run places: its SKUs, its buyers and, for each order number, the same order every time for a
//! given seed (whatever the timing).

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::invariants::Lines;

/// The SKUs, users and order shapes of one run.
#[derive(Clone, Debug)]
pub struct Workload {
    pub run_id: String,
    pub skus: Vec<String>,
    pub users: Vec<String>,
    lines: usize,
    max_quantity: u32,
    seed: u64,
}

/// One order to place.
#[derive(Clone, Debug)]
pub struct OrderSpec {
    /// Index into [`Workload::users`].
    pub user: usize,
    pub idempotency_key: String,
    pub lines: Lines,
    /// The JSON body of `POST /api/orders`.
    pub body: Vec<u8>,
}

impl Workload {
    pub fn new(run_id: &str, skus: u32, users: u32, lines: u32, max_quantity: u32, seed: u64) -> Workload {
        Workload {
            run_id: run_id.to_owned(),
            skus: (0..skus).map(|i| format!("LT-{run_id}-{i:03}")).collect(),
            users: (0..users).map(|i| format!("lt-{run_id}-u{i:02}")).collect(),
            lines: lines as usize,
            max_quantity,
            seed,
        }
    }

    /// The unit price of SKU `i`: a few whole and decimal amounts, written exactly.
    fn price(i: usize) -> String {
        format!("{}.{:02}", 5 + (i * 7) % 45, (i * 37) % 100)
    }

    /// Order number `n`: `lines` distinct SKUs, 1..=`max_quantity` each, for user `n mod users`.
    pub fn order(&self, n: u64) -> OrderSpec {
        let mut rng = StdRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let user = (n % self.users.len().max(1) as u64) as usize;
        let count = self.lines.clamp(1, self.skus.len().max(1));
        let mut picked: Vec<usize> = sample(&mut rng, self.skus.len(), count).into_vec();
        picked.sort_unstable();
        let mut lines = Lines::new();
        let mut items = Vec::with_capacity(count);
        for i in picked {
            let Some(sku) = self.skus.get(i) else { continue };
            let quantity = rng.random_range(1..=self.max_quantity.max(1));
            lines.insert(sku.clone(), i64::from(quantity));
            let price: serde_json::Number = Self::price(i).parse().unwrap_or_else(|_| 1.into());
            items.push(json!({"skuId": sku, "quantity": quantity, "price": price}));
        }
        let body = json!({"userId": self.users.get(user), "items": items})
            .to_string()
            .into_bytes();
        OrderSpec {
            user,
            idempotency_key: format!("lt-{}-{n}", self.run_id),
            lines,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_reproducible_and_well_formed() {
        let w = Workload::new("ab12cd34", 20, 4, 2, 3, 7);
        let a = w.order(5);
        let b = w.order(5);
        assert_eq!(a.body, b.body);
        assert_eq!(a.idempotency_key, "lt-ab12cd34-5");
        assert_eq!(a.user, 1);
        assert_eq!(a.lines.len(), 2);
        assert!(a.lines.values().all(|q| (1..=3).contains(q)));
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["userId"], "lt-ab12cd34-u01");
        assert_eq!(body["items"].as_array().unwrap().len(), 2);
        let text = String::from_utf8(a.body).unwrap();
        assert!(
            text.contains(r#""price":"#) && !text.contains(r#""price":""#),
            "{text}"
        );
        assert_ne!(w.order(6).idempotency_key, a.idempotency_key);
    }

    #[test]
    fn lines_never_exceed_the_skus() {
        let w = Workload::new("x", 2, 1, 5, 1, 1);
        assert_eq!(w.order(0).lines.len(), 2);
        assert_eq!(w.skus, ["LT-x-000", "LT-x-001"]);
    }
}
