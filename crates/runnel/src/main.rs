//! `runnel`: the broker (`runnel broker`). The binary holds only the command line, the
//! config file and environment, logging setup and signal handling; the broker itself is
//! the `runnel-broker` crate.

mod alloc;
mod cli;

#[global_allocator]
static GLOBAL: alloc::Allocator = alloc::Allocator;

fn main() -> std::process::ExitCode {
    cli::main()
}
