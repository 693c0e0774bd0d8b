//! Routing: which of the SPEC's routes a method and path name.
//!
//! Pure, so every path a caller might send (encoded ids, trailing slashes, dot
//! segments) is unit-tested here; the id inside a Graph-shaped path is decoded here
//! and validated by [`crate::inbound::user_id::UserId::parse`] like any other id.

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

/// Routes `method` and `path` (without the query). The path's shape decides the route,
/// then the method (405), and only then is the Graph-shaped path's id decoded (400): a
/// wrong method is reported as such whatever the id looks like.
pub fn route(method: &str, path: &str) -> Result<Route, Error> {
    let only = |allowed: &'static str| {
        if method == allowed {
            Ok(())
        } else {
            Err(Error::MethodNotAllowed { allow: allowed })
        }
    };
    match path {
        "/revoke" => only("POST").map(|()| Route::Revoke),
        "/healthz" => only("GET").map(|()| Route::Health),
        "/openapi.json" => only("GET").map(|()| Route::OpenApi),
        _ => {
            let segment = path
                .strip_prefix("/users/")
                .and_then(|rest| rest.strip_suffix("/revokeSignInSessions"))
                .filter(|segment| !segment.is_empty() && !segment.contains('/'))
                .ok_or(Error::NotFound)?;
            only("POST")?;
            let decoded = percent_decode_str(segment).decode_utf8().map_err(|_| {
                Error::InvalidUserId("the user id in the path is not valid UTF-8 once percent-decoded".into())
            })?;
            Ok(Route::GraphShaped { raw_user_id: decoded.into_owned() })
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
    fn the_method_is_checked_before_the_id_is_decoded() {
        for method in ["GET", "PUT", "DELETE"] {
            assert_eq!(
                route(method, "/users/%FF/revokeSignInSessions"),
                Err(Error::MethodNotAllowed { allow: "POST" }),
                "{method}"
            );
        }
        // A path that names no route stays 404 whatever the method.
        assert_eq!(route("GET", "/users/%FF/revokeSignInSessions/x"), Err(Error::NotFound));
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
