//! The request as it arrives, before anything is sent: which route, the body within its
//! limits, the JSON rules, Microsoft Sentinel entities, and the user ids that go into Graph's
//! URLs. Pure: nothing here touches the host.

pub(crate) mod route;
pub(crate) mod incoming;
pub(crate) mod request_body;
pub(crate) mod sentinel;
pub(crate) mod user_id;
pub(crate) mod guid;
