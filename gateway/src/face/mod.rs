//! Inbound API faces other than Chat Completions.

pub mod responses;
