//! `runnel`: the broker (`runnel broker`) and an operator client (`runnel topic`,
//! `produce`, `consume`, `group`, `cluster`, `completions`) in one binary. The binary holds
//! only the command line, the config file and environment, logging setup, signal handling
//! and presentation; the broker itself is the `runnel-broker` crate and the client side is
//! librdkafka (through `rdkafka`).

mod cli;

/// Huge blocks are reserved with `mmap(MAP_NORESERVE)`: defence in depth behind
/// `runnel_protocol::walk`, which already refuses requests whose lengths exceed their frame
/// before `kafka-protocol` pre-allocates from them (see `runnel_protocol::alloc`).
#[global_allocator]
static GLOBAL: runnel_protocol::alloc::NoReserveHuge = runnel_protocol::alloc::NoReserveHuge;

fn main() -> std::process::ExitCode {
    cli::main()
}
