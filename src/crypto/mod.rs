//! RSA, as graph-revoke needs it: verifying Entra ID caller tokens (RS256) and signing
//! the certificate credential's client assertion (PS256 or RS256). A leaf: it knows
//! nothing of tokens, settings or the host.

pub(crate) mod montgomery;
pub(crate) mod signer;
