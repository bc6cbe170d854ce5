//! The event topology of the first seed: one topic exchange, and the consumer queues with their bindings.
//! Both transports (in-process and RabbitMQ) route by this table.

/// The topic exchange every event is published to.
pub const EXCHANGE: &str = "ecom.events";

pub const Q_INVENTORY_ORDER_CREATED: &str = "q.inventory.order-created";
pub const Q_INVENTORY_RELEASE_REQUESTED: &str = "q.inventory.release-requested";
pub const Q_PAYMENT_INVENTORY_RESERVED: &str = "q.payment.inventory-reserved";
pub const Q_ORDER_INVENTORY_RESULT: &str = "q.order.inventory-result";
pub const Q_ORDER_PAYMENT_RESULT: &str = "q.order.payment-result";
pub const Q_NOTIFICATION_ORDER_CREATED: &str = "q.notification.order-created";
pub const Q_PAYMENT_REFUND_REQUESTED: &str = "q.payment.refund-requested";

/// A consumer queue and the patterns it is bound with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: &'static str,
    pub bindings: &'static [&'static str],
    /// Consumed by one consumer at a time in the whole deployment (RabbitMQ's single active consumer;
    /// the other nodes' consumers stand by and take over when it goes away): its messages write the
    /// few hot stock rows, and batches of several nodes would only queue for those rows' locks.
    pub single_active: bool,
}

/// Every consumer queue. Each also has a `.retry` and a `.dlq` companion on RabbitMQ. The refund queue
/// is ordersaga's own addition to the seed's topology; `payment.refunded` reaches the saga through the
/// seed's `payment.*` binding.
pub const QUEUES: [QueueSpec; 7] = [
    QueueSpec {
        name: Q_INVENTORY_ORDER_CREATED,
        bindings: &["order.created"],
        single_active: true,
    },
    QueueSpec {
        name: Q_INVENTORY_RELEASE_REQUESTED,
        bindings: &["inventory.release.requested"],
        single_active: true,
    },
    QueueSpec {
        name: Q_PAYMENT_INVENTORY_RESERVED,
        bindings: &["inventory.reserved"],
        single_active: false,
    },
    QueueSpec {
        name: Q_ORDER_INVENTORY_RESULT,
        bindings: &["inventory.*"],
        single_active: false,
    },
    QueueSpec {
        name: Q_ORDER_PAYMENT_RESULT,
        bindings: &["payment.*"],
        single_active: false,
    },
    QueueSpec {
        name: Q_NOTIFICATION_ORDER_CREATED,
        bindings: &["order.created"],
        single_active: false,
    },
    QueueSpec {
        name: Q_PAYMENT_REFUND_REQUESTED,
        bindings: &["payment.refund.requested"],
        single_active: false,
    },
];

/// The spec of a queue by name.
pub fn queue(name: &str) -> Option<&'static QueueSpec> {
    QUEUES.iter().find(|q| q.name == name)
}

/// AMQP topic matching: words are separated by `.`, `*` matches exactly one word, `#` zero or more.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.split_first(), k.split_first()) {
            (None, None) => true,
            (Some((&"#", p_rest)), _) => {
                go(p_rest, k) || k.split_first().is_some_and(|(_, k_rest)| go(p, k_rest))
            }
            (Some((&"*", p_rest)), Some((_, k_rest))) => go(p_rest, k_rest),
            (Some((pw, p_rest)), Some((kw, k_rest))) if pw == kw => go(p_rest, k_rest),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

/// The queues an event with `routing_key` reaches.
pub fn queues_for(routing_key: &str) -> impl Iterator<Item = &'static QueueSpec> + '_ {
    QUEUES
        .iter()
        .filter(move |q| q.bindings.iter().any(|b| topic_matches(b, routing_key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::keys;

    #[test]
    fn topic_patterns() {
        assert!(topic_matches("inventory.*", "inventory.reserved"));
        assert!(!topic_matches("inventory.*", "inventory.release.requested"));
        assert!(topic_matches("#", "inventory.release.requested"));
        assert!(topic_matches("inventory.#", "inventory"));
        assert!(topic_matches("*.created", "order.created"));
        assert!(!topic_matches("order.created", "order.created.x"));
    }

    #[test]
    fn every_routing_key_reaches_the_seed_queues() {
        let names = |key| queues_for(key).map(|q| q.name).collect::<Vec<_>>();
        assert_eq!(
            names(keys::ORDER_CREATED),
            [Q_INVENTORY_ORDER_CREATED, Q_NOTIFICATION_ORDER_CREATED]
        );
        assert_eq!(
            names(keys::INVENTORY_RESERVED),
            [Q_PAYMENT_INVENTORY_RESERVED, Q_ORDER_INVENTORY_RESULT]
        );
        assert_eq!(names(keys::INVENTORY_FAILED), [Q_ORDER_INVENTORY_RESULT]);
        assert_eq!(
            names(keys::INVENTORY_RELEASE_REQUESTED),
            [Q_INVENTORY_RELEASE_REQUESTED]
        );
        assert_eq!(names(keys::INVENTORY_RELEASED), [Q_ORDER_INVENTORY_RESULT]);
        assert_eq!(names(keys::PAYMENT_SUCCEEDED), [Q_ORDER_PAYMENT_RESULT]);
        assert_eq!(names(keys::PAYMENT_FAILED), [Q_ORDER_PAYMENT_RESULT]);
        assert_eq!(
            names(keys::PAYMENT_REFUND_REQUESTED),
            [Q_PAYMENT_REFUND_REQUESTED]
        );
        assert_eq!(names(keys::PAYMENT_REFUNDED), [Q_ORDER_PAYMENT_RESULT]);
    }
}
