//! Scraping Prometheus text / OpenMetrics endpoints: [`exposition`] parses a body, [`target`]
//! runs one scrape loop per target (target labels, report series, staleness markers).

pub mod exposition;
pub mod target;

pub use target::{ScrapeOutcome, TargetScraper, run_target};
