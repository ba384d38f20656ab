//! Scraping Prometheus text / OpenMetrics endpoints: [`exposition`] parses a body, [`target`]
//! runs one scrape loop per target (target labels, report series, staleness markers).

pub mod exposition;
pub mod file_sd;
pub mod pool;
pub mod target;

pub use pool::{DiscoveredTarget, ScrapeContext, ScrapePool, TargetKind};
pub use target::{ScrapeOutcome, TargetScraper, run_target};
