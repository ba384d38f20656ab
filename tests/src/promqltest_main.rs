//! `pharos-promqltest [DIR]`: runs Prometheus' promqltest files (default
//! `../shared/conformance/promql`) against fresh `pharos serve` processes and prints per-file
//! pass rates and every failure. Build the binaries first (`cargo build --bins`).

use pharos_e2e::promqltest::{render, run_dir};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| pharos_e2e::repo_root().join("../shared/conformance/promql"));
    let logs = tempfile::tempdir()?;
    let reports = run_dir(&dir, logs.path())
        .await
        .map_err(anyhow::Error::msg)?;
    print!("{}", render(&reports));
    Ok(())
}
