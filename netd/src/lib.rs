//! netd: the engine (networks, endpoints, port bindings, links, filters) and its front ends.
pub mod dataplane;
