//! Maps a request path to the function that serves it.
//!
//! Built once at start from the manifest. A route is an exact path (`/hello`), a path with
//! parameters (`/users/:id`, one segment each, as Spin routes them, and `/users/:id/*`,
//! anything below such a path), or a prefix wildcard (`/api/*`, matching `/api` and
//! everything below it). An exact route beats a route with
//! parameters (the one with more fixed segments first, then the one declared first), which
//! beats any wildcard, and the longest wildcard prefix wins, whatever the manifest order;
//! two functions claiming the same route is an error reported with both, never a silent
//! shadow.

use std::collections::HashMap;
use std::fmt;

/// One route of a function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoutePattern {
    /// Matches this path only.
    Exact(String),
    /// Matches this path and every path below it; `""` (from `/*`) matches everything.
    Prefix(String),
    /// Matches paths of these segments, a `:name` one matching any single segment.
    Params(Vec<Segment>),
}

/// One segment of a route with parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// This text.
    Fixed(String),
    /// Any one segment, named.
    Param(String),
    /// What is left of the path, if anything: only last, after parameters.
    Rest,
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
    /// A parameter must be named.
    #[error("route {0:?}: a parameter is a whole segment with a name, as in \"/users/:id\"")]
    BadParam(String),
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
        if body.split('/').any(|s| s.starts_with(':')) {
            let mut segments: Vec<Segment> = body[1..]
                .split('/')
                .map(|s| match s.strip_prefix(':') {
                    Some(name) => Segment::Param(name.to_string()),
                    None => Segment::Fixed(s.to_string()),
                })
                .collect();
            let unnamed = segments
                .iter()
                .any(|s| matches!(s, Segment::Param(n) if n.is_empty() || n.contains(':')));
            if unnamed {
                return Err(RouteError::BadParam(route.to_string()));
            }
            if wildcard {
                segments.push(Segment::Rest);
            }
            return Ok(RoutePattern::Params(segments));
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
        let fixed;
        let path = match self {
            RoutePattern::Exact(p) | RoutePattern::Prefix(p) => p,
            // Its fixed segments before the first parameter, as a path.
            RoutePattern::Params(segments) => {
                fixed = segments
                    .iter()
                    .map_while(|s| match s {
                        Segment::Fixed(f) => Some(format!("/{f}")),
                        Segment::Param(_) | Segment::Rest => None,
                    })
                    .collect::<String>()
                    + "/";
                &fixed
            }
        };
        path == dir || path.starts_with(prefix)
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutePattern::Exact(p) => f.write_str(p),
            RoutePattern::Prefix(p) => write!(f, "{p}/*"),
            RoutePattern::Params(segments) => {
                for s in segments {
                    match s {
                        Segment::Fixed(t) => write!(f, "/{t}")?,
                        Segment::Param(n) => write!(f, "/:{n}")?,
                        Segment::Rest => f.write_str("/*")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// Which route a path matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    /// The function whose route it is.
    pub function: usize,
    /// For a wildcard route, or one with parameters and a wildcard, how long the part of
    /// the path before the wildcard is (the path's first so many bytes); `None` for the
    /// others.
    pub prefix: Option<usize>,
    /// For a route with parameters, its segments (the path's segments line up with them).
    pub params: Option<&'a [Segment]>,
}

/// The routes of every function, ready for lookups.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    exact: HashMap<String, usize>,
    prefix: HashMap<String, usize>,
    /// Routes with parameters, most fixed segments first, then in manifest order.
    params: Vec<(Vec<Segment>, usize)>,
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
                RoutePattern::Params(segments) => {
                    let same = table.params.iter().find(|(s, _)| s == segments);
                    match same {
                        Some(&(_, first)) if first != function => {
                            return Err(DuplicateRoute {
                                pattern,
                                first_function: first,
                                second_entry: entry,
                            });
                        }
                        Some(_) => {}
                        None => table.params.push((segments.clone(), function)),
                    }
                    continue;
                }
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
        // Stable: among as many fixed segments, one without a wildcard, then the one
        // declared first.
        table.params.sort_by_key(|(segments, _)| {
            (
                std::cmp::Reverse(
                    segments
                        .iter()
                        .filter(|s| matches!(s, Segment::Fixed(_)))
                        .count(),
                ),
                segments.last() == Some(&Segment::Rest),
            )
        });
        Ok(table)
    }

    /// The function serving `path`, if any.
    pub fn lookup(&self, path: &str) -> Option<usize> {
        self.matched(path).map(|m| m.function)
    }

    /// The function serving `path`, and the route of its that matched.
    pub fn matched(&self, path: &str) -> Option<RouteMatch<'_>> {
        if let Some(&function) = self.exact.get(path) {
            return Some(RouteMatch {
                function,
                prefix: None,
                params: None,
            });
        }
        if !self.params.is_empty()
            && let Some(found) = self.with_params(path)
        {
            return Some(found);
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
                    params: None,
                });
            }
            match candidate.rfind('/') {
                Some(i) => candidate = &candidate[..i],
                None => return None,
            }
        }
    }

    fn with_params(&self, path: &str) -> Option<RouteMatch<'_>> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        self.params.iter().find_map(|(segments, function)| {
            let (fixed, wildcard) = match segments.split_last() {
                Some((Segment::Rest, before)) => (before, true),
                _ => (segments.as_slice(), false),
            };
            let fits = if wildcard {
                parts.len() >= fixed.len()
            } else {
                parts.len() == fixed.len()
            } && fixed.iter().zip(&parts).all(|(s, p)| match s {
                Segment::Fixed(f) => f == p,
                Segment::Param(_) => !p.is_empty(),
                Segment::Rest => false,
            });
            fits.then(|| RouteMatch {
                function: *function,
                // The matched segments, each with the '/' before it.
                prefix: wildcard.then(|| {
                    fixed.len() + parts[..fixed.len()].iter().map(|p| p.len()).sum::<usize>()
                }),
                params: Some(segments),
            })
        })
    }

    /// Whether no function has a route.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty() && self.params.is_empty()
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
    fn parameters_match_one_segment_and_rank_between_exact_and_wildcard() {
        let t = table(&[
            ("/users/*", 0),
            ("/users/:id", 1),
            ("/users/me", 2),
            ("/users/:id/orders/:order", 3),
            ("/:any/orders/:order", 4),
        ]);
        assert_eq!(t.lookup("/users/me"), Some(2));
        assert_eq!(t.lookup("/users/42"), Some(1));
        assert_eq!(
            t.lookup("/users/42/orders/7"),
            Some(3),
            "more fixed segments first"
        );
        assert_eq!(t.lookup("/shops/orders/7"), Some(4));
        assert_eq!(
            t.lookup("/users/42/x"),
            Some(0),
            "no parameter route fits: the wildcard"
        );
        assert_eq!(t.lookup("/users/"), Some(0), "a parameter is never empty");
        let m = t.matched("/users/42").unwrap();
        assert_eq!(
            m.params,
            Some(&[Segment::Fixed("users".into()), Segment::Param("id".into())][..])
        );
        assert_eq!(
            RoutePattern::parse("/users/:id").unwrap().to_string(),
            "/users/:id"
        );
        for bad in ["/users/:", "/a/::b", "/users/:/*"] {
            assert!(
                matches!(RoutePattern::parse(bad), Err(RouteError::BadParam(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn parameters_then_a_wildcard_match_the_rest_of_the_path() {
        let t = table(&[
            ("/users/:id/*", 0),
            ("/users/:id/orders", 1),
            ("/users/:id", 2),
            ("/*", 3),
        ]);
        assert_eq!(t.lookup("/users/42/orders"), Some(1));
        assert_eq!(t.lookup("/users/42"), Some(2), "without a wildcard first");
        let m = t.matched("/users/42/files/a.txt").unwrap();
        assert_eq!(m.function, 0);
        assert_eq!(
            m.prefix,
            Some("/users/42".len()),
            "what the wildcard follows"
        );
        assert_eq!(t.lookup("/users/42/"), Some(0));
        assert_eq!(t.lookup("/users"), Some(3));
        let only = table(&[("/users/:id/*", 0)]);
        let m = only.matched("/users/42").unwrap();
        assert_eq!((m.function, m.prefix), (0, Some(9)), "and the path itself");
        assert_eq!(
            RoutePattern::parse("/users/:id/*").unwrap().to_string(),
            "/users/:id/*"
        );
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
