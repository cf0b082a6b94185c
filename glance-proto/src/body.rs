//! The body type the service and the client stream (from `stackfed-http`).

pub use stackfed_http::{boxed, empty, from_stream, full, Body, BoxError};
