//! `mdops-local`: the embedded adapters (SQLite queue and state) behind the ports of `mdops-core`.
//!
//! (Being built: see the queue and state issue.)
