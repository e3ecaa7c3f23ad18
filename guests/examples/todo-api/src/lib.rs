//! A small CRUD API over a key-value store: todos as JSON resources.
//!
//! - `POST /todos` with `{"title": "..."}` → 201 and the todo with its `id`; a missing or
//!   empty title is a 422 naming the field;
//! - `GET /todos` → every todo; `GET /todos/{id}` → one, or 404;
//! - `PUT /todos/{id}` with `{"title"?, "done"?}` → the updated todo, or 404;
//! - `DELETE /todos/{id}` → 204, or 404.
use serde::{Deserialize, Serialize};
use wasmfn_sdk::kv::Store;
use wasmfn_sdk::{Error, Json, Request, Response, Router};

#[derive(Serialize, Deserialize)]
struct Todo {
    id: u64,
    title: String,
    done: bool,
}

#[derive(Deserialize)]
struct Change {
    title: Option<String>,
    done: Option<bool>,
}

const PREFIX: &str = "todo:";

fn store() -> Result<Store, Error> {
    Store::open("default")
}

fn id(req: &Request) -> Result<u64, Error> {
    req.param("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| Error::not_found("no such todo"))
}

fn load(store: &Store, id: u64) -> Result<Todo, Error> {
    store
        .get_json(&format!("{PREFIX}{id}"))?
        .ok_or_else(|| Error::not_found(format!("no todo has id {id}")))
}

fn title(title: Option<String>) -> Result<Option<String>, Error> {
    match title {
        Some(t) if t.trim().is_empty() => Err(Error::new(422, "title: must not be empty")),
        other => Ok(other),
    }
}

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    Router::new()
        .post("/todos", |req: Request| -> Result<Response, Error> {
            let change: Change = req.json()?;
            let title =
                title(change.title)?.ok_or_else(|| Error::new(422, "title: is required"))?;
            let store = store()?;
            let id = store.increment("todo-next-id", 1)?;
            let todo = Todo {
                id,
                title,
                done: change.done.unwrap_or(false),
            };
            store.set_json(&format!("{PREFIX}{id}"), &todo)?;
            Ok(Response::json(201, &todo))
        })
        .get("/todos", |_| -> Result<Json<Vec<Todo>>, Error> {
            let store = store()?;
            let mut todos = Vec::new();
            for key in store.keys()?.into_iter().filter(|k| k.starts_with(PREFIX)) {
                if let Some(todo) = store.get_json::<Todo>(&key)? {
                    todos.push(todo);
                }
            }
            todos.sort_by_key(|t| t.id);
            Ok(Json(todos))
        })
        .get("/todos/:id", |req: Request| -> Result<Json<Todo>, Error> {
            Ok(Json(load(&store()?, id(&req)?)?))
        })
        .put("/todos/:id", |req: Request| -> Result<Json<Todo>, Error> {
            let store = store()?;
            let mut todo = load(&store, id(&req)?)?;
            let change: Change = req.json()?;
            if let Some(t) = title(change.title)? {
                todo.title = t;
            }
            if let Some(done) = change.done {
                todo.done = done;
            }
            store.set_json(&format!("{PREFIX}{}", todo.id), &todo)?;
            Ok(Json(todo))
        })
        .delete("/todos/:id", |req: Request| -> Result<Response, Error> {
            let store = store()?;
            let todo = load(&store, id(&req)?)?;
            store.delete(&format!("{PREFIX}{}", todo.id))?;
            Ok(Response::new(204))
        })
        .handle(req)
}
