//! `pharos`: the Pharos control plane.
//!
//! `pharos serve` runs every control-plane role (collector, query) in one process;
//! `pharos up` does the same and adds an embedded agent and sample logs for a first look.

mod config;
mod demo;
mod serve;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use config::{Overrides, PharosConfig};

#[derive(Parser)]
#[command(name = "pharos", version, about = "Pharos observability control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (collector + query API) until SIGINT/SIGTERM.
    Serve(Overrides),
    /// Run the control plane with an embedded agent scraping Pharos itself and tailing sample
    /// logs: visible data with no other service.
    Up(Overrides),
    /// Check a configuration file and exit (0 when valid).
    CheckConfig {
        /// The file to check.
        config: std::path::PathBuf,
    },
}

/// mimalloc rather than glibc malloc: less fragmentation with many threads (peak RSS) and faster
/// small allocations (measured with `pharos-bench tsdb --pharos-only`, see the README).
/// Feature `system-alloc` keeps glibc malloc, for heap profilers such as heaptrack.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before returning it to the OS, in ms. Its default
/// (1000 ms) let peak RSS reach twice the live heap in the tsdb benchmark: a flush, a compaction
/// and a query each free tens of MB that stayed resident while the next one allocated more.
/// 100 ms was tried as well: a range query re-faults less of the memory its own earlier steps
/// freed (5–15 % less query CPU), but peak RSS was 60 MB (about 20 %) higher. Measured with
/// `pharos-bench tsdb --pharos-only` (see the README); `MIMALLOC_PURGE_DELAY` in the environment
/// still wins.
#[cfg(not(feature = "system-alloc"))]
const PURGE_DELAY_MS: std::ffi::c_long = 10;

#[cfg(not(feature = "system-alloc"))]
mod mi {
    use std::ffi::{c_int, c_long};

    /// `mi_option_purge_delay`'s place in `mi_option_e` of mimalloc 3 (`mimalloc.h`), which the
    /// locked `libmimalloc-sys` builds but whose Rust bindings lack this option.
    pub const PURGE_DELAY: c_int = 15;
    /// mimalloc 3's default for that option; no other option defaults to it, so reading it back
    /// confirms the number still names the option.
    pub const PURGE_DELAY_DEFAULT: c_long = 1000;

    unsafe extern "C" {
        pub fn mi_option_get(option: c_int) -> c_long;
        pub fn mi_option_set(option: c_int, value: c_long);
    }
}

/// Applies [`PURGE_DELAY_MS`] unless the environment sets the delay. Returns what it did, for
/// the log.
#[cfg(not(feature = "system-alloc"))]
fn tune_allocator() -> String {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return "mimalloc purge delay from MIMALLOC_PURGE_DELAY".into();
    }
    // SAFETY: plain option accessors of the linked mimalloc; any option number is accepted.
    let current = unsafe { mi::mi_option_get(mi::PURGE_DELAY) };
    if current != mi::PURGE_DELAY_DEFAULT {
        return format!("mimalloc option {} reads {current}, not the purge delay's default: left alone", mi::PURGE_DELAY);
    }
    // SAFETY: as above; mimalloc reads this option on every purge decision.
    unsafe { mi::mi_option_set(mi::PURGE_DELAY, PURGE_DELAY_MS) };
    format!("mimalloc purge delay {PURGE_DELAY_MS} ms")
}

#[cfg(feature = "system-alloc")]
fn tune_allocator() -> String {
    "glibc malloc (feature system-alloc)".into()
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PHAROS_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let allocator = tune_allocator();
    tracing::debug!("{allocator}");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { config } => PharosConfig::load(&config).map(|_| println!("{}: ok", config.display())),
        Command::Serve(o) => run(o, false),
        Command::Up(o) => run(o, true),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(overrides: Overrides, demo: bool) -> anyhow::Result<()> {
    let cfg = PharosConfig::resolve(&overrides)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async move {
        let server = serve::Server::start(&cfg).await?;
        let mut background = Vec::new();
        if demo {
            let agent_listen = std::net::SocketAddr::new(server.addr.ip(), 0);
            let yaml = demo::agent_config_yaml(server.addr, agent_listen, &cfg.data_dir);
            let agent_cfg = pharos_agent::AgentConfig::from_yaml(&yaml).context("embedded agent config")?;
            background.push(tokio::spawn(async move {
                if let Err(e) = pharos_agent::run(agent_cfg, std::future::pending::<()>()).await {
                    tracing::error!(error = %format!("{e:#}"), "embedded agent stopped");
                }
            }));
            let dir = cfg.data_dir.clone();
            background.push(tokio::spawn(async move {
                if let Err(e) = demo::generate_logs(dir).await {
                    tracing::error!(error = %format!("{e:#}"), "demo log generator stopped");
                }
            }));
            println!("Pharos is up: open http://{}/ (metrics: /api/v1/query?query=up, logs: /loki/api/v1/query_range?query={{namespace=\"demo\"}})", server.addr);
        } else {
            println!("Pharos is serving on http://{}/", server.addr);
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        for t in background {
            t.abort();
        }
        server.shutdown().await
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(all(test, not(feature = "system-alloc")))]
mod tests {
    use super::mi;

    /// The option number is mimalloc's purge delay: it reads that option's default (unique among
    /// mimalloc 3's options) until set, then what was set. Fails if an upgrade renumbers options.
    #[test]
    fn the_purge_delay_option_number_names_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the environment chose the value, so the default cannot be checked
        }
        // SAFETY: option accessors of the linked mimalloc.
        unsafe {
            assert_eq!(mi::mi_option_get(mi::PURGE_DELAY), mi::PURGE_DELAY_DEFAULT);
            assert_eq!(mi::mi_option_get(mi::PURGE_DELAY + 1), 0, "use_numa_nodes follows it, default 0");
        }
        assert_eq!(super::tune_allocator(), format!("mimalloc purge delay {} ms", super::PURGE_DELAY_MS));
        // SAFETY: as above.
        assert_eq!(unsafe { mi::mi_option_get(mi::PURGE_DELAY) }, super::PURGE_DELAY_MS);
    }
}
