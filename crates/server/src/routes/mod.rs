//! The routes, one module per resource.

pub mod admin;
pub mod agents;
pub mod live;
pub mod openapi;
pub mod ops;
pub mod sessions;
pub mod tasks;
