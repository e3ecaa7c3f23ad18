//! Maps a request path to the function that serves it.
//!
//! Built once at start from the manifest. A route is an exact path (`/hello`) or a prefix
//! wildcard (`/api/*`, matching `/api` and everything below it). An exact route beats any
//! wildcard and the longest wildcard prefix wins, whatever the manifest order; two functions
//! claiming the same route is an error reported with both, never a silent shadow.

use std::collections::HashMap;
use std::fmt;

/// One route of a function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoutePattern {
    /// Matches this path only.
    Exact(String),
    /// Matches this path and every path below it; `""` (from `/*`) matches everything.
    Prefix(String),
}

/// Why a route string is not a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Routes are absolute paths.
    #[error("route {0:?} must start with '/'")]
    NotAbsolute(String),
    /// Only a trailing `/*` is a wildcard.
    #[error("route {0:?}: '*' may only end a route, as in \"/api/*\"")]
    MisplacedWildcard(String),
    /// Queries and fragments are not part of routing.
    #[error("route {0:?} must be a path without '?' or '#'")]
    NotAPath(String),
}

impl RoutePattern {
    /// Parses `/exact` or `/prefix/*`.
    pub fn parse(route: &str) -> Result<Self, RouteError> {
        if !route.starts_with('/') {
            return Err(RouteError::NotAbsolute(route.to_string()));
        }
        if route.contains(['?', '#']) {
            return Err(RouteError::NotAPath(route.to_string()));
        }
        let (body, wildcard) = match route.strip_suffix("/*") {
            Some(prefix) => (prefix, true),
            None => (route, false),
        };
        if body.contains('*') {
            return Err(RouteError::MisplacedWildcard(route.to_string()));
        }
        Ok(if wildcard {
            RoutePattern::Prefix(body.to_string())
        } else {
            RoutePattern::Exact(body.to_string())
        })
    }

    /// Whether this route explicitly claims a path at or under `prefix` (a path ending in
    /// '/'). A catch-all like `/*` does not: the host answers its own paths before routing.
    pub fn overlaps_prefix(&self, prefix: &str) -> bool {
        let dir = prefix.trim_end_matches('/');
        let path = match self {
            RoutePattern::Exact(p) | RoutePattern::Prefix(p) => p,
        };
        path == dir || path.starts_with(prefix)
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutePattern::Exact(p) => f.write_str(p),
            RoutePattern::Prefix(p) => write!(f, "{p}/*"),
        }
    }
}

/// Which route a path matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// The function whose route it is.
    pub function: usize,
    /// For a wildcard route, how long its prefix is (the path's first so many bytes);
    /// `None` for an exact route.
    pub prefix: Option<usize>,
}

/// The routes of every function, ready for lookups.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    exact: HashMap<String, usize>,
    prefix: HashMap<String, usize>,
}

/// Two functions claim the same route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateRoute {
    /// The route claimed twice.
    pub pattern: RoutePattern,
    /// The function that claimed it first.
    pub first_function: usize,
    /// The position, in the input of [`RouteTable::build`], of the second claim.
    pub second_entry: usize,
}

impl RouteTable {
    /// Builds the table from (route, function index) pairs.
    pub fn build(
        routes: impl IntoIterator<Item = (RoutePattern, usize)>,
    ) -> Result<Self, DuplicateRoute> {
        let mut table = RouteTable::default();
        for (entry, (pattern, function)) in routes.into_iter().enumerate() {
            let (map, key) = match &pattern {
                RoutePattern::Exact(p) => (&mut table.exact, p),
                RoutePattern::Prefix(p) => (&mut table.prefix, p),
            };
            if let Some(&first) = map.get(key) {
                // The same function listing a route twice is harmless; two functions is not.
                if first != function {
                    return Err(DuplicateRoute {
                        pattern,
                        first_function: first,
                        second_entry: entry,
                    });
                }
                continue;
            }
            map.insert(key.clone(), function);
        }
        Ok(table)
    }

    /// The function serving `path`, if any.
    pub fn lookup(&self, path: &str) -> Option<usize> {
        self.matched(path).map(|m| m.function)
    }

    /// The function serving `path`, and the route of its that matched.
    pub fn matched(&self, path: &str) -> Option<RouteMatch> {
        if let Some(&function) = self.exact.get(path) {
            return Some(RouteMatch {
                function,
                prefix: None,
            });
        }
        if self.prefix.is_empty() {
            return None;
        }
        // Walk up one segment at a time, so the first hit is the longest prefix.
        let mut candidate = path;
        loop {
            if let Some(&function) = self.prefix.get(candidate) {
                return Some(RouteMatch {
                    function,
                    prefix: Some(candidate.len()),
                });
            }
            match candidate.rfind('/') {
                Some(i) => candidate = &candidate[..i],
                None => return None,
            }
        }
    }

    /// Whether no function has a route.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, usize)]) -> RouteTable {
        RouteTable::build(
            routes
                .iter()
                .map(|(r, f)| (RoutePattern::parse(r).unwrap(), *f)),
        )
        .unwrap()
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins_regardless_of_order() {
        let t = table(&[
            ("/*", 0),
            ("/api/*", 1),
            ("/api/v1/*", 2),
            ("/api/v1/health", 3),
        ]);
        assert_eq!(t.lookup("/api/v1/health"), Some(3));
        assert_eq!(t.lookup("/api/v1/health/x"), Some(2));
        assert_eq!(t.lookup("/api/v1"), Some(2));
        assert_eq!(t.lookup("/api/v2/x"), Some(1));
        assert_eq!(t.lookup("/api"), Some(1));
        assert_eq!(t.lookup("/apix"), Some(0));
        assert_eq!(t.lookup("/"), Some(0));
    }

    #[test]
    fn prefix_matches_whole_segments_only() {
        let t = table(&[("/api/*", 1), ("/hello", 2)]);
        assert_eq!(t.lookup("/apix"), None);
        assert_eq!(t.lookup("/api/"), Some(1));
        assert_eq!(t.lookup("/hello/"), None);
        assert_eq!(t.lookup("/hello"), Some(2));
        assert_eq!(t.lookup("/"), None);
    }

    #[test]
    fn duplicate_routes_name_both_claims() {
        let routes = ["/a", "/b/*", "/c", "/b/*"].map(|r| RoutePattern::parse(r).unwrap());
        let err = RouteTable::build(routes.into_iter().zip([0, 0, 1, 1])).unwrap_err();
        assert_eq!(
            err,
            DuplicateRoute {
                pattern: RoutePattern::Prefix("/b".into()),
                first_function: 0,
                second_entry: 3
            }
        );
        // An exact route and a wildcard on the same path are different routes.
        assert!(
            RouteTable::build([
                (RoutePattern::parse("/b").unwrap(), 0),
                (RoutePattern::parse("/b/*").unwrap(), 1)
            ])
            .is_ok()
        );
    }

    #[test]
    fn parse_rejects_what_is_not_a_route() {
        assert_eq!(
            RoutePattern::parse("/*"),
            Ok(RoutePattern::Prefix(String::new()))
        );
        assert!(matches!(
            RoutePattern::parse("x"),
            Err(RouteError::NotAbsolute(_))
        ));
        assert!(matches!(
            RoutePattern::parse("/a*"),
            Err(RouteError::MisplacedWildcard(_))
        ));
        assert!(matches!(
            RoutePattern::parse("/a/*/b"),
            Err(RouteError::MisplacedWildcard(_))
        ));
        assert!(matches!(
            RoutePattern::parse("/a?b=1"),
            Err(RouteError::NotAPath(_))
        ));
    }

    #[test]
    fn reserved_space_is_claimed_only_by_explicit_routes() {
        let reserved = "/.well-known/wasmfn/";
        assert!(
            RoutePattern::parse("/.well-known/wasmfn/ready")
                .unwrap()
                .overlaps_prefix(reserved)
        );
        assert!(
            RoutePattern::parse("/.well-known/wasmfn/*")
                .unwrap()
                .overlaps_prefix(reserved)
        );
        assert!(
            RoutePattern::parse("/.well-known/wasmfn")
                .unwrap()
                .overlaps_prefix(reserved)
        );
        assert!(!RoutePattern::parse("/*").unwrap().overlaps_prefix(reserved));
        assert!(
            !RoutePattern::parse("/.well-known/*")
                .unwrap()
                .overlaps_prefix(reserved)
        );
        assert!(
            !RoutePattern::parse("/.well-known/wasmfnx")
                .unwrap()
                .overlaps_prefix(reserved)
        );
    }
}
