//! Failpoints at the file-system boundary, built only with the `failpoints` feature (for
//! tests; never in a release binary). A plan is per thread: the storage calls a test makes
//! on its own thread see it, other threads do not.
//!
//! A plan fails calls of chosen kinds ([`Op`]): the `n`th call from now
//! ([`fail_nth`]), or each call with a probability drawn from a seeded generator
//! ([`fail_randomly`]). An injected write writes half its bytes first, like a full disk.

use std::cell::RefCell;
use std::io;

pub use crate::fsio::Op;

const OPS: usize = 6;

fn slot(op: Op) -> usize {
    match op {
        Op::Open => 0,
        Op::Write => 1,
        Op::Fsync => 2,
        Op::Rename => 3,
        Op::Remove => 4,
        Op::Truncate => 5,
    }
}

#[derive(Default)]
struct Plan {
    countdown: [Option<u64>; OPS],
    stall: [Option<std::time::Duration>; OPS],
    per_million: [u32; OPS],
    rng: u64,
    injected: u64,
}

thread_local! {
    static PLAN: RefCell<Plan> = RefCell::new(Plan::default());
}

/// Fails the `n`th call of kind `op` from now (1 = the next one), once.
pub fn fail_nth(op: Op, n: u64) {
    PLAN.with(|p| p.borrow_mut().countdown[slot(op)] = Some(n.max(1)));
}

/// Fails each call of kind `op` with probability `per_million` / 1,000,000, drawn from a
/// generator seeded by `seed` (the same seed and calls give the same failures).
pub fn fail_randomly(op: Op, per_million: u32, seed: u64) {
    PLAN.with(|p| {
        let mut p = p.borrow_mut();
        p.per_million[slot(op)] = per_million;
        if p.rng == 0 {
            p.rng = seed | 1;
        }
    });
}

/// Makes each call of kind `op` on this thread take `d` longer (a slow disk).
pub fn stall(op: Op, d: std::time::Duration) {
    PLAN.with(|p| p.borrow_mut().stall[slot(op)] = Some(d));
}

/// Removes every failpoint of this thread.
pub fn clear() {
    PLAN.with(|p| *p.borrow_mut() = Plan::default());
}

/// How many failures were injected on this thread since the last [`clear`].
pub fn injected() -> u64 {
    PLAN.with(|p| p.borrow().injected)
}

/// Called by [`crate::fsio`] before each call of kind `op`.
pub(crate) fn check(op: Op) -> io::Result<()> {
    PLAN.with(|p| {
        let mut p = p.borrow_mut();
        let i = slot(op);
        if let Some(d) = p.stall[i] {
            std::thread::sleep(d);
        }
        let mut fail = false;
        if let Some(n) = p.countdown[i] {
            if n <= 1 {
                p.countdown[i] = None;
                fail = true;
            } else {
                p.countdown[i] = Some(n - 1);
            }
        }
        if !fail && p.per_million[i] > 0 {
            // xorshift64*
            let mut x = p.rng;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            p.rng = x;
            fail = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % 1_000_000 < u64::from(p.per_million[i]);
        }
        if fail {
            p.injected += 1;
            return Err(io::Error::other(format!("injected {op:?} failure")));
        }
        Ok(())
    })
}
