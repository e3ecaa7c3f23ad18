//! The databases guests reach through Spin's interfaces, with no WASI standard for them yet:
//! SQLite databases a function is granted by label ([`sqlite`]), and PostgreSQL and Redis
//! servers it connects to by address, allowed by its `allowed_outbound_hosts` ([`postgres`],
//! [`redis`]). Each is one implementation here; `engine/spin_sqlite.rs`,
//! `engine/spin_postgres.rs` and `engine/spin_redis.rs` serve it through every version of
//! the interface a guest may import.

pub mod postgres;
pub mod redis;
pub mod sqlite;
