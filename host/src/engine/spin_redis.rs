//! Spin's Redis interface over the host's Redis connections (crate::databases::redis), in
//! each version a guest may import: `spin:redis@3.0.0` (spin-sdk 7, WASI 0.3, async) and
//! `fermyon:spin/redis@2.0.0` (spin-sdk 5.2, WASI 0.2). A guest opens a connection by
//! address, which its `allowed_outbound_hosts` must allow; every command is bounded by the
//! invocation's deadline, and a failure is the interface's `error`, never a trap.

use std::time::Instant;

use super::state::State;
use crate::databases::redis::{self, Connection, RedisError, RedisParameter, RedisResult};

impl State {
    /// The host's connection to `address`, if the function may reach it.
    fn open_redis(&self, address: &str) -> Result<Connection, RedisError> {
        let uri = redis::authority(address)?;
        let grant = self.hooks.grant.as_ref().filter(|g| g.hosts.allows(&uri));
        let Some(grant) = grant else {
            tracing::warn!(function = %self.hooks.function, address = %uri, "Redis connection denied: not in allowed_outbound_hosts");
            return Err(RedisError::Other(format!(
                "{} is not in this component's allowed_outbound_hosts",
                uri.to_string().trim_end_matches('/')
            )));
        };
        grant.redis.open(address)
    }

    /// The connection behind a guest's handle, and when its command must be done.
    fn redis_call(
        &self,
        this: &wasmtime::component::Resource<Connection>,
    ) -> wasmtime::Result<(Connection, Instant)> {
        Ok((self.table.get(this)?.clone(), self.call_deadline()))
    }
}

/// The conversions between one version's generated types and the host's, expanded inside
/// each version's module.
macro_rules! conversions {
    () => {
        fn error_out(e: RedisError) -> Error {
            match e {
                RedisError::InvalidAddress => Error::InvalidAddress,
                RedisError::TooManyConnections => Error::TooManyConnections,
                RedisError::TypeError => Error::TypeError,
                RedisError::Other(message) => Error::Other(message),
            }
        }

        fn parameter_in(p: RedisParameter3) -> RedisParameter {
            match p {
                RedisParameter3::Int64(i) => RedisParameter::Int64(i),
                RedisParameter3::Binary(b) => RedisParameter::Binary(b),
            }
        }

        fn result_out(r: RedisResult) -> RedisResult3 {
            match r {
                RedisResult::Nil => RedisResult3::Nil,
                RedisResult::Status(s) => RedisResult3::Status(s),
                RedisResult::Int64(i) => RedisResult3::Int64(i),
                RedisResult::Binary(b) => RedisResult3::Binary(b),
            }
        }
    };
}

/// `spin:redis@3.0.0`, as spin-sdk 7 imports it.
pub(crate) mod v3 {
    use wasmtime::component::{Accessor, HasData, Resource};

    use super::super::state::State;
    use super::{Connection, RedisError, RedisParameter, RedisResult};

    pub(crate) mod bindings {
        wasmtime::component::bindgen!({
            path: [
                "wit/spin/sqlite@3.1.0.wit",
                "wit/spin/sqlite@3.0.0.wit",
                "wit/spin/redis@3.0.0.wit",
                "wit/spin/fermyon-spin@2.0.0.wit",
                "wit/spin-data.wit",
            ],
            world: "wasmfn:spin-data-host/redis3",
            imports: { default: trappable },
            with: {
                "spin:redis/redis.connection": crate::databases::redis::Connection,
            },
        });
    }

    use bindings::spin::redis::redis::{
        self, Error, RedisParameter as RedisParameter3, RedisResult as RedisResult3,
    };

    conversions!();

    /// The `HasData` of the interface: its functions reach the instance's [`State`].
    pub(crate) struct Redis;

    impl HasData for Redis {
        type Data<'a> = &'a mut State;
    }

    type Result<T, E = Error> = wasmtime::Result<std::result::Result<T, E>>;

    fn call<T>(
        accessor: &Accessor<T, Redis>,
        this: &Resource<Connection>,
    ) -> wasmtime::Result<(Connection, std::time::Instant)> {
        accessor.with(|mut view| view.get().redis_call(this))
    }

    impl<T> redis::HostConnectionWithStore<T> for Redis {
        async fn open(
            accessor: &Accessor<T, Self>,
            address: String,
        ) -> Result<Resource<Connection>> {
            accessor.with(|mut view| {
                let state = view.get();
                Ok(match state.open_redis(&address) {
                    Ok(connection) => Ok(state.table.push(connection)?),
                    Err(e) => Err(error_out(e)),
                })
            })
        }

        async fn publish(
            accessor: &Accessor<T, Self>,
            this: Resource<Connection>,
            channel: String,
            payload: Vec<u8>,
        ) -> Result<()> {
            let (c, deadline) = call(accessor, &this)?;
            Ok(c.publish(&channel, &payload, deadline)
                .await
                .map_err(error_out))
        }

        async fn get(
            accessor: &Accessor<T, Self>,
            this: Resource<Connection>,
            key: String,
        ) -> Result<Option<Vec<u8>>> {
            let (c, deadline) = call(accessor, &this)?;
            Ok(c.get(&key, deadline).await.map_err(error_out))
        }

        async fn set(
            accessor: &Accessor<T, Self>,
            this: Resource<Connection>,
            key: String,
            value: Vec<u8>,
        ) -> Result<()> {
            let (c, deadline) = call(accessor, &this)?;
            Ok(c.set(&key, &value, deadline).await.map_err(error_out))
        }

        async fn incr(
            accessor: &Accessor<T, Self>,
            this: Resource<Connection>,
            key: String,
        ) -> Result<i64> {
            let (c, deadline) = call(accessor, &this)?;
            Ok(c.incr(&key, deadline).await.map_err(error_out))
        }

        async fn del(
            accessor: &Accessor<T, Self>,
            this: Resource<Connection>,
            keys: Vec<String>,
        ) -> Result<u32> {
            let (c, deadline) = call(accessor, &this)?;
            Ok(c.count("DEL", None, &keys, deadline)
                .await
                .map_err(error_out))
        }

        async fn sadd(
            accessor: &Accessor<T, Self>,
            this: Resource<Connection>,
            key: String,
            values: Vec<String>,
        ) -> Result<u32> {
            let (c, deadline) = call(accessor, &this)?;
            Ok(c.count("SADD", Some(&key), &values, deadline)
                .await
                .map_err(error_out))
        }

        async fn smembers(
            accessor: &Accessor<T, Self>,
            this: Resource<Connection>,
            key: String,
        ) -> Result<Vec<String>> {
            let (c, deadline) = call(accessor, &this)?;
            Ok(c.smembers(&key, deadline).await.map_err(error_out))
        }

        async fn srem(
            accessor: &Accessor<T, Self>,
            this: Resource<Connection>,
            key: String,
            values: Vec<String>,
        ) -> Result<u32> {
            let (c, deadline) = call(accessor, &this)?;
            Ok(c.count("SREM", Some(&key), &values, deadline)
                .await
                .map_err(error_out))
        }

        async fn execute(
            accessor: &Accessor<T, Self>,
            this: Resource<Connection>,
            command: String,
            arguments: Vec<RedisParameter3>,
        ) -> Result<Vec<RedisResult3>> {
            let (c, deadline) = call(accessor, &this)?;
            let arguments = arguments.into_iter().map(parameter_in).collect();
            Ok(c.execute(&command, arguments, deadline)
                .await
                .map(|results| results.into_iter().map(result_out).collect())
                .map_err(error_out))
        }
    }

    impl redis::HostConnection for &mut State {
        fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
            self.table.delete(this)?;
            Ok(())
        }
    }

    impl redis::Host for &mut State {}
}

/// `fermyon:spin/redis@2.0.0`, as spin-sdk 5.2 imports it.
pub(crate) mod v2 {
    use wasmtime::component::Resource;

    use super::super::state::State;
    use super::{Connection, RedisError, RedisParameter, RedisResult};

    pub(crate) mod bindings {
        wasmtime::component::bindgen!({
            path: [
                "wit/spin/sqlite@3.1.0.wit",
                "wit/spin/sqlite@3.0.0.wit",
                "wit/spin/redis@3.0.0.wit",
                "wit/spin/fermyon-spin@2.0.0.wit",
                "wit/spin-data.wit",
            ],
            world: "wasmfn:spin-data-host/redis2",
            imports: { default: async | trappable },
            with: {
                "fermyon:spin/redis.connection": crate::databases::redis::Connection,
            },
        });
    }

    use bindings::fermyon::spin::redis::{
        self, Error, RedisParameter as RedisParameter3, RedisResult as RedisResult3,
    };

    conversions!();

    type Result<T, E = Error> = wasmtime::Result<std::result::Result<T, E>>;

    impl redis::HostConnection for State {
        async fn open(&mut self, address: String) -> Result<Resource<Connection>> {
            Ok(match self.open_redis(&address) {
                Ok(connection) => Ok(self.table.push(connection)?),
                Err(e) => Err(error_out(e)),
            })
        }

        async fn publish(
            &mut self,
            this: Resource<Connection>,
            channel: String,
            payload: Vec<u8>,
        ) -> Result<()> {
            let (c, deadline) = self.redis_call(&this)?;
            Ok(c.publish(&channel, &payload, deadline)
                .await
                .map_err(error_out))
        }

        async fn get(
            &mut self,
            this: Resource<Connection>,
            key: String,
        ) -> Result<Option<Vec<u8>>> {
            let (c, deadline) = self.redis_call(&this)?;
            Ok(c.get(&key, deadline).await.map_err(error_out))
        }

        async fn set(
            &mut self,
            this: Resource<Connection>,
            key: String,
            value: Vec<u8>,
        ) -> Result<()> {
            let (c, deadline) = self.redis_call(&this)?;
            Ok(c.set(&key, &value, deadline).await.map_err(error_out))
        }

        async fn incr(&mut self, this: Resource<Connection>, key: String) -> Result<i64> {
            let (c, deadline) = self.redis_call(&this)?;
            Ok(c.incr(&key, deadline).await.map_err(error_out))
        }

        async fn del(&mut self, this: Resource<Connection>, keys: Vec<String>) -> Result<u32> {
            let (c, deadline) = self.redis_call(&this)?;
            Ok(c.count("DEL", None, &keys, deadline)
                .await
                .map_err(error_out))
        }

        async fn sadd(
            &mut self,
            this: Resource<Connection>,
            key: String,
            values: Vec<String>,
        ) -> Result<u32> {
            let (c, deadline) = self.redis_call(&this)?;
            Ok(c.count("SADD", Some(&key), &values, deadline)
                .await
                .map_err(error_out))
        }

        async fn smembers(
            &mut self,
            this: Resource<Connection>,
            key: String,
        ) -> Result<Vec<String>> {
            let (c, deadline) = self.redis_call(&this)?;
            Ok(c.smembers(&key, deadline).await.map_err(error_out))
        }

        async fn srem(
            &mut self,
            this: Resource<Connection>,
            key: String,
            values: Vec<String>,
        ) -> Result<u32> {
            let (c, deadline) = self.redis_call(&this)?;
            Ok(c.count("SREM", Some(&key), &values, deadline)
                .await
                .map_err(error_out))
        }

        async fn execute(
            &mut self,
            this: Resource<Connection>,
            command: String,
            arguments: Vec<RedisParameter3>,
        ) -> Result<Vec<RedisResult3>> {
            let (c, deadline) = self.redis_call(&this)?;
            let arguments = arguments.into_iter().map(parameter_in).collect();
            Ok(c.execute(&command, arguments, deadline)
                .await
                .map(|results| results.into_iter().map(result_out).collect())
                .map_err(error_out))
        }

        async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
            self.table.delete(this)?;
            Ok(())
        }
    }

    impl redis::Host for State {}
}
