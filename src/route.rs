//! Routing: which of the SPEC's routes a method and path name.
//!
//! Pure, so every path a caller might send (encoded ids, trailing slashes, dot
//! segments) is unit-tested here; the id inside a Graph-shaped path is decoded here
//! and validated by [`crate::user_id::UserId::parse`] like any other id.

use percent_encoding::percent_decode_str;

use crate::error::Error;

/// A request the component serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /revoke`: ids in the JSON body.
    Revoke,
    /// `POST /users/{userId}/revokeSignInSessions`: the id from the path, decoded but not yet validated.
    GraphShaped { raw_user_id: String },
    /// `GET /healthz`.
    Health,
    /// `GET /openapi.json`.
    OpenApi,
}

impl Route {
    /// A short, stable name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Revoke => "revoke",
            Route::GraphShaped { .. } => "revokeSignInSessions",
            Route::Health => "healthz",
            Route::OpenApi => "openapi",
        }
    }
}

/// Routes `method` and `path` (without the query).
pub fn route(method: &str, path: &str) -> Result<Route, Error> {
    let only = |allowed: &'static str, route: Route| {
        if method == allowed {
            Ok(route)
        } else {
            Err(Error::MethodNotAllowed { allow: allowed })
        }
    };
    match path {
        "/revoke" => only("POST", Route::Revoke),
        "/healthz" => only("GET", Route::Health),
        "/openapi.json" => only("GET", Route::OpenApi),
        _ => {
            let segment = path
                .strip_prefix("/users/")
                .and_then(|rest| rest.strip_suffix("/revokeSignInSessions"))
                .filter(|segment| !segment.is_empty() && !segment.contains('/'))
                .ok_or(Error::NotFound)?;
            let decoded = percent_decode_str(segment).decode_utf8().map_err(|_| {
                Error::InvalidUserId("the user id in the path is not valid UTF-8 once percent-decoded".into())
            })?;
            only("POST", Route::GraphShaped { raw_user_id: decoded.into_owned() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_routes() {
        assert_eq!(route("POST", "/revoke"), Ok(Route::Revoke));
        assert_eq!(route("GET", "/healthz"), Ok(Route::Health));
        assert_eq!(route("GET", "/openapi.json"), Ok(Route::OpenApi));
        assert_eq!(
            route("POST", "/users/alice%40contoso.com/revokeSignInSessions"),
            Ok(Route::GraphShaped { raw_user_id: "alice@contoso.com".into() })
        );
    }

    #[test]
    fn path_ids_are_percent_decoded_once() {
        assert_eq!(
            route("POST", "/users/a_b.com%23EXT%23@c.com/revokeSignInSessions"),
            Ok(Route::GraphShaped { raw_user_id: "a_b.com#EXT#@c.com".into() })
        );
        // An encoded slash decodes to '/', which the id rules then refuse.
        assert_eq!(
            route("POST", "/users/..%2Fadmin/revokeSignInSessions"),
            Ok(Route::GraphShaped { raw_user_id: "../admin".into() })
        );
        assert!(matches!(
            route("POST", "/users/%FF/revokeSignInSessions"),
            Err(Error::InvalidUserId(_))
        ));
    }

    #[test]
    fn wrong_methods_name_the_allowed_one() {
        assert_eq!(route("GET", "/revoke"), Err(Error::MethodNotAllowed { allow: "POST" }));
        assert_eq!(route("POST", "/healthz"), Err(Error::MethodNotAllowed { allow: "GET" }));
        assert_eq!(
            route("DELETE", "/users/x/revokeSignInSessions"),
            Err(Error::MethodNotAllowed { allow: "POST" })
        );
    }

    #[test]
    fn everything_else_is_not_found() {
        for path in [
            "/",
            "/revoke/",
            "/users//revokeSignInSessions",
            "/users/a/b/revokeSignInSessions",
            "/users/a/revokeSignInSessions/x",
            "/v1.0/users/a/revokeSignInSessions",
            "/healthz/x",
        ] {
            assert_eq!(route("POST", path), Err(Error::NotFound), "{path}");
        }
    }
}
