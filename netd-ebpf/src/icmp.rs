//! ICMP errors (destination unreachable, time exceeded, parameter problem) that quote a
//! translated flow.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netd_common::DpConfig;

use crate::parse::Pkt;

const PASS: i32 = TC_ACT_OK;

pub fn from_uplink(_ctx: &TcContext, _pkt: &Pkt, _cfg: &DpConfig) -> Result<i32, u32> {
    Ok(PASS)
}

pub fn to_uplink(_ctx: &TcContext, _pkt: &Pkt, _cfg: &DpConfig) -> Result<i32, u32> {
    Ok(PASS)
}

pub fn from_container(_ctx: &TcContext, _pkt: &Pkt, _cfg: &DpConfig) -> Result<i32, u32> {
    Ok(PASS)
}
