//! The answer and the record: JSON replies in Graph's shapes, the per-request trace that
//! feeds the headers and the log line, and the one JSON log line itself.

pub(crate) mod response;
pub(crate) mod trace;
pub(crate) mod log;
