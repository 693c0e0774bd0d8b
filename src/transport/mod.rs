//! Sending: outbound requests and answers as plain values (with redacted `Debug`), the
//! retry policy and `Retry-After`, and the time budget every try must fit in.

pub(crate) mod outbound;
pub(crate) mod pipeline;
pub(crate) mod retry;
