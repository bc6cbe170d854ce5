//! The saga's pure core: one step of the state machine, and whole paths through it.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use actors::saga::machine::{PAYMENT_FAILED, SagaInput, SagaState, step};

fn reserved() -> SagaInput {
    SagaInput::InventoryReserved {
        reservation_id: "7a1f0c9e-3b2d-4c55-9a0e-5f1d2c3b4a59".to_owned(),
    }
}

fn paid() -> SagaInput {
    SagaInput::PaymentSucceeded {
        payment_id: "0b6c7d8e-9f10-4112-8314-a5b6c7d8e9f0".to_owned(),
    }
}

fn declined() -> SagaInput {
    SagaInput::PaymentFailed {
        payment_id: "0b6c7d8e-9f10-4112-8314-a5b6c7d8e9f0".to_owned(),
        reason: "PAYMENT_DECLINED".to_owned(),
    }
}

fn released() -> SagaInput {
    SagaInput::InventoryReleased {
        release_id: "c3d4e5f6-0718-4293-a4b5-c6d7e8f90a1b".to_owned(),
        reason: PAYMENT_FAILED.to_owned(),
    }
}

/// Runs `inputs` from `AWAITING_INVENTORY` and returns where the saga ends.
fn walk(inputs: &[SagaInput]) -> SagaState {
    let mut state = SagaState::AwaitingInventory;
    for input in inputs {
        state = step(state, black_box(input)).to;
    }
    state
}

fn machine(c: &mut Criterion) {
    let input = reserved();
    c.bench_function("machine/step reserve", |b| {
        b.iter(|| step(black_box(SagaState::AwaitingInventory), black_box(&input)))
    });
    let late = paid();
    c.bench_function("machine/step ignored (late event)", |b| {
        b.iter(|| step(black_box(SagaState::Completed), black_box(&late)))
    });
    let happy = [reserved(), paid()];
    c.bench_function("machine/path confirmed (2 steps)", |b| b.iter(|| walk(&happy)));
    let compensated = [reserved(), declined(), released()];
    c.bench_function("machine/path compensated (3 steps)", |b| {
        b.iter(|| walk(&compensated))
    });
}

criterion_group!(benches, machine);
criterion_main!(benches);
