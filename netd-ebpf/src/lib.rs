#![no_std]
// This file exists so the agent can build-depend on this crate (aya-build); the programs are in
// the `netd` binary target (main.rs).
