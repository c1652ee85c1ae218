//! Sinks for snapshots: JSON lines and the plain text view.
pub mod json;
pub mod text;
