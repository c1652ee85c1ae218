//! Exporters to monitoring systems.
pub mod metrics;
