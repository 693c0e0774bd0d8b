//! graph-revoke's own identity towards Graph: the token a request uses (cached, fetched,
//! refreshed once), the client-credentials request and its answer, the cache entry, and the
//! three credentials (`client_secret`, a certificate's signed client assertion, a managed
//! identity). The credential is read only when a token must be fetched.

pub(crate) mod session;
pub(crate) mod token;
pub(crate) mod token_cache;
pub(crate) mod client_assertion;
pub(crate) mod managed_identity;
pub(crate) mod der;
