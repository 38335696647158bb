//! Typed Graph resources.
