//! Spin's interfaces this host does not serve: mqtt, mysql, postgres, redis, sqlite, llm,
//! otel, and any other in Spin's world. componentize-py builds a Spin app against the whole
//! `spin:up/platform` world and imports every interface in it, used or not; such a
//! component must load, and fail only where it calls one of them. Each such import is
//! linked, for that component alone, to functions that answer with the interface's own
//! error case, or that trap naming the interface where it has none. Other imports this host
//! lacks are still refused at load: only Spin's world imports what it does not use.

use std::sync::Arc;

use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, Linker, ResourceType, Val};

/// The host type of every resource of an unserved interface: no call ever makes one,
/// because the function that would (`open`, `new`) answers with an error.
struct Unserved;

/// Whether `name` is an interface of Spin's world, which may be linked as unserved.
pub(crate) fn in_spin_world(name: &str) -> bool {
    name.starts_with("spin:")
        || name.starts_with("fermyon:spin/")
        || name.starts_with("wasi:otel/")
        || name.starts_with("wasi:keyvalue/")
        || name.ends_with(super::wasi_version::RELEASE_CANDIDATE)
}

/// Links each import of `component` from Spin's world that `linker` lacks. Returns the
/// interfaces so linked: empty when nothing was missing.
pub(crate) fn link<T: 'static>(
    linker: &mut Linker<T>,
    component: &Component,
) -> wasmtime::Result<Vec<String>> {
    let engine = linker.engine().clone();
    let ty = component.component_type();
    let mut linked = Vec::new();
    for (name, item) in ty.imports(&engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !in_spin_world(name) {
            continue;
        }
        let interface: Arc<str> = name.into();
        let mut defined = linker.instance(name)?;
        // Functions first: where the linker already holds one, this host serves the
        // interface (defining it again fails), and its resources, some of them another
        // interface's (`use store.{bucket}`), are the served ones: they are left alone.
        let mut added = false;
        let mut served = false;
        for (export, item) in instance.exports(&engine) {
            let ComponentItem::ComponentFunc(f) = item.ty else {
                continue;
            };
            let interface = interface.clone();
            let function: Arc<str> = export.into();
            let outcome = if f.async_() {
                defined.func_new_concurrent(export, move |_, ty, _, results| {
                    let answer = answer(&interface, &function, &ty, results);
                    Box::pin(async move { answer })
                })
            } else {
                defined.func_new(export, move |_, ty, _, results| {
                    answer(&interface, &function, &ty, results)
                })
            };
            match outcome {
                Ok(()) => added = true,
                Err(_) => served = true,
            }
        }
        if !served {
            for (export, item) in instance.exports(&engine) {
                if let ComponentItem::Resource(_) = item.ty {
                    let host = ResourceType::host::<Unserved>();
                    added |= defined.resource(export, host, |_, _| Ok(())).is_ok();
                }
            }
        }
        if added {
            linked.push(name.to_string());
        }
    }
    Ok(linked)
}

/// What a call to an unserved function returns: nothing, for a function that returns
/// nothing (telemetry, which is then dropped); the error case of its `result` that carries
/// a message (`other(string)` first); otherwise a trap that names the interface.
fn answer(
    interface: &str,
    function: &str,
    ty: &ComponentFunc,
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let message =
        format!("{interface} is not supported by this host (wasmfn); `{function}` was called");
    let returns: Vec<Type> = ty.results().collect();
    match (returns.as_slice(), results) {
        ([], []) => Ok(()),
        ([Type::Result(result)], [out]) => match result.err().and_then(|e| error(&e, &message)) {
            Some(error) => {
                *out = Val::Result(Err(Some(Box::new(error))));
                Ok(())
            }
            None => Err(wasmtime::format_err!("{message}")),
        },
        _ => Err(wasmtime::format_err!("{message}")),
    }
}

/// An error value of type `ty` that carries `message`, if it can.
fn error(ty: &Type, message: &str) -> Option<Val> {
    match ty {
        Type::String => Some(Val::String(message.to_string())),
        Type::Variant(variant) => {
            let carries =
                |c: &wasmtime::component::types::Case<'_>| matches!(c.ty, Some(Type::String));
            let case = variant
                .cases()
                .find(|c| c.name == "other" && carries(c))
                .or_else(|| variant.cases().find(carries))?;
            Some(Val::Variant(
                case.name.to_string(),
                Some(Box::new(Val::String(message.to_string()))),
            ))
        }
        _ => None,
    }
}
