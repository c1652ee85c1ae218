//! Exporters to monitoring systems.
pub mod metrics;
pub mod web_config;
