use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use crate::{Error, IntoResponse, Request, Response};

/// What an async route's handler returns once called.
type Responding = Pin<Box<dyn Future<Output = Response>>>;

enum Handler {
    Plain(Box<dyn Fn(Request) -> Response>),
    /// A WASI 0.3 handler's: run by [`Router::handle_async`].
    Async(Box<dyn Fn(Request) -> Responding>),
}

/// A small in-guest router: method + path pattern to handler.
///
/// Patterns are matched segment by segment: `:name` captures one segment (read it with
/// [`Request::param`]) and a final `*` captures the rest of the path as the parameter `*`.
/// Routes are tried in the order they were added and the first match wins. A path that
/// matches only under other methods gets 405 with `Allow`; no match at all gets 404.
#[derive(Default)]
pub struct Router {
    routes: Vec<(String, Vec<Segment>, Handler)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for `method` (any case) and `pattern`.
    pub fn route<F, R>(mut self, method: &str, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request) -> R + 'static,
        R: IntoResponse,
    {
        let segments = parse_pattern(pattern);
        self.routes.push((
            method.to_ascii_uppercase(),
            segments,
            Handler::Plain(Box::new(move |req| handler(req).into_response())),
        ));
        self
    }

    /// Adds a route whose handler is async (in a WASI 0.3 handler, which dispatches with
    /// [`Router::handle_async`]), e.g. `.route_async("GET", "/rates", async |_| fetch().await)`.
    pub fn route_async<F, Fut>(mut self, method: &str, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + 'static,
        Fut: Future<Output: IntoResponse> + 'static,
    {
        let segments = parse_pattern(pattern);
        self.routes.push((
            method.to_ascii_uppercase(),
            segments,
            Handler::Async(Box::new(move |req| {
                let response = handler(req);
                Box::pin(async move { response.await.into_response() })
            })),
        ));
        self
    }

    /// Adds a GET route with an async handler (see [`Router::route_async`]).
    pub fn get_async<F, Fut>(self, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + 'static,
        Fut: Future<Output: IntoResponse> + 'static,
    {
        self.route_async("GET", pattern, handler)
    }

    /// Adds a POST route with an async handler (see [`Router::route_async`]).
    pub fn post_async<F, Fut>(self, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + 'static,
        Fut: Future<Output: IntoResponse> + 'static,
    {
        self.route_async("POST", pattern, handler)
    }

    /// Adds a GET route.
    pub fn get<F: Fn(Request) -> R + 'static, R: IntoResponse>(
        self,
        pattern: &str,
        handler: F,
    ) -> Self {
        self.route("GET", pattern, handler)
    }

    /// Adds a POST route.
    pub fn post<F: Fn(Request) -> R + 'static, R: IntoResponse>(
        self,
        pattern: &str,
        handler: F,
    ) -> Self {
        self.route("POST", pattern, handler)
    }

    /// Adds a PUT route.
    pub fn put<F: Fn(Request) -> R + 'static, R: IntoResponse>(
        self,
        pattern: &str,
        handler: F,
    ) -> Self {
        self.route("PUT", pattern, handler)
    }

    /// Adds a DELETE route.
    pub fn delete<F: Fn(Request) -> R + 'static, R: IntoResponse>(
        self,
        pattern: &str,
        handler: F,
    ) -> Self {
        self.route("DELETE", pattern, handler)
    }

    /// Dispatches the request to the first matching route.
    pub fn handle(&self, req: Request) -> Response {
        match self.find(req) {
            Ok((Handler::Plain(handler), req)) => handler(req),
            Ok((Handler::Async(_), req)) => Error::internal(format!(
                "the route for {} {} is async: dispatch with Router::handle_async",
                req.method, req.path
            ))
            .into_response(),
            Err(response) => response,
        }
    }

    /// Dispatches the request to the first matching route, plain or async.
    pub async fn handle_async(&self, req: Request) -> Response {
        match self.find(req) {
            Ok((Handler::Plain(handler), req)) => handler(req),
            Ok((Handler::Async(handler), req)) => handler(req).await,
            Err(response) => response,
        }
    }

    /// The first matching route's handler, and the request with its parameters; or the 404
    /// or 405 answer.
    fn find(&self, mut req: Request) -> Result<(&Handler, Request), Response> {
        let mut allowed: Vec<&str> = Vec::new();
        for (method, segments, handler) in &self.routes {
            let Some(params) = match_path(segments, &req.path) else {
                continue;
            };
            if *method != req.method {
                if !allowed.contains(&method.as_str()) {
                    allowed.push(method);
                }
                continue;
            }
            req.params = params;
            return Ok((handler, req));
        }
        Err(if allowed.is_empty() {
            Error::not_found(format!("no route for {} {}", req.method, req.path)).into_response()
        } else {
            Error::new(
                405,
                format!("{} is not allowed on {}", req.method, req.path),
            )
            .into_response()
            .with_header("allow", allowed.join(", "))
        })
    }
}

fn parse_pattern(pattern: &str) -> Vec<Segment> {
    pattern
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "*" => Segment::Rest,
            _ => match s.strip_prefix(':') {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(s.to_string()),
            },
        })
        .collect()
}

fn match_path(pattern: &[Segment], path: &str) -> Option<HashMap<String, String>> {
    let mut params = HashMap::new();
    let mut parts = path.split('/').filter(|s| !s.is_empty());
    for (i, segment) in pattern.iter().enumerate() {
        match segment {
            Segment::Rest => {
                let rest: Vec<&str> = parts.by_ref().collect();
                params.insert("*".to_string(), rest.join("/"));
                debug_assert_eq!(i, pattern.len() - 1, "`*` ends a pattern");
                return Some(params);
            }
            Segment::Literal(lit) => {
                if parts.next()? != lit {
                    return None;
                }
            }
            Segment::Param(name) => {
                params.insert(name.clone(), parts.next()?.to_string());
            }
        }
    }
    parts.next().is_none().then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new()
            .get("/items", |_| "list")
            .get("/items/:id", |req: Request| {
                format!("item {}", req.param("id").unwrap())
            })
            .post("/items", |_| (201, "created"))
            .get("/files/*", |req: Request| {
                req.param("*").unwrap().to_string()
            })
    }

    fn body(r: &Response) -> &str {
        std::str::from_utf8(r.body()).unwrap()
    }

    #[test]
    fn matches_literals_and_params() {
        assert_eq!(
            body(&router().handle(Request::new("GET", "/items"))),
            "list"
        );
        assert_eq!(
            body(&router().handle(Request::new("GET", "/items/42?x=1"))),
            "item 42"
        );
        assert_eq!(
            router().handle(Request::new("POST", "/items")).status(),
            201
        );
    }

    #[test]
    fn rest_captures_the_remaining_path() {
        assert_eq!(
            body(&router().handle(Request::new("GET", "/files/a/b/c"))),
            "a/b/c"
        );
        assert_eq!(body(&router().handle(Request::new("GET", "/files"))), "");
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
        assert_eq!(router().handle(Request::new("GET", "/nope")).status(), 404);
        assert_eq!(
            router()
                .handle(Request::new("GET", "/items/1/extra"))
                .status(),
            404
        );
        let r = router().handle(Request::new("DELETE", "/items"));
        assert_eq!(r.status(), 405);
        assert_eq!(r.header("allow"), Some("GET, POST"));
    }

    #[test]
    fn async_routes_run_through_handle_async_and_plain_ones_through_both() {
        let router = Router::new()
            .get("/plain", |_req: Request| "plain")
            .get_async("/items/:id", async |req: Request| {
                format!("item {}", req.param("id").unwrap_or_default())
            });
        // Each handler here is ready at once: one poll runs it.
        let run = |req: Request| {
            let mut future = std::pin::pin!(router.handle_async(req));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match future.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(response) => response,
                std::task::Poll::Pending => panic!("the handler waited"),
            }
        };
        assert_eq!(run(Request::new("GET", "/items/7")).body(), b"item 7");
        assert_eq!(run(Request::new("GET", "/plain")).body(), b"plain");
        assert_eq!(run(Request::new("GET", "/nowhere")).status(), 404);
        assert_eq!(
            router.handle(Request::new("GET", "/plain")).body(),
            b"plain"
        );
        assert_eq!(router.handle(Request::new("GET", "/items/7")).status(), 500);
    }

    #[test]
    fn query_params_are_decoded() {
        let req = Request::new("GET", "/x?name=J%C3%BCrgen&a=1");
        assert_eq!(req.query_param("name").as_deref(), Some("Jürgen"));
        assert_eq!(req.query_param("missing"), None);
    }
}
