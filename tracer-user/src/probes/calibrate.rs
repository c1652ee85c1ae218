//! What one probe hit costs on this kernel: a uprobe on a function of
//! deferscope's own, timed over a known number of calls.
//!
//! The `calibrate` program does the work of a push probe (two user reads, a
//! ring-buffer reservation) but discards its event, so the figure is the trap
//! plus a typical program, as the target pays it.
use std::{
    hint::black_box,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
    programs::uprobe::UProbeScope,
};
use tracer_common::counter;

use super::{ProbeError, error_chain, program_by_name};

/// Calls per timed round, and rounds. The fastest round counts: noise (other
/// work preempting this thread) only ever adds time, and short rounds often
/// run unpreempted even on a loaded machine.
const CALLS: u64 = 200;
const ROUNDS: usize = 40;

/// The probed function: never inlined, so every call enters it.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn deferscope_calibration_point(x: u64) -> u64 {
    black_box(x).rotate_left(7) ^ 0x5a5a
}

fn timed_calls() -> Duration {
    let f: extern "C" fn(u64) -> u64 = black_box(deferscope_calibration_point);
    let started = Instant::now();
    let mut acc = 0u64;
    for i in 0..CALLS {
        acc = acc.wrapping_add(f(i));
    }
    black_box(acc);
    started.elapsed()
}

/// The file offset of our own calibration point, from /proc/self/maps.
fn own_file_offset() -> Result<u64, ProbeError> {
    let addr = deferscope_calibration_point as *const () as usize as u64;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(_perms), Some(offset)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end), Ok(offset)) =
            (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16), u64::from_str_radix(offset, 16))
        else {
            continue;
        };
        if (start..end).contains(&addr) {
            return Ok(addr - start + offset);
        }
    }
    Err(ProbeError::Load("calibration point not found in /proc/self/maps".into()))
}

fn calibration_hits(ebpf: &Ebpf) -> u64 {
    ebpf.map("COUNTERS")
        .and_then(|map| PerCpuArray::<&MapData, u64>::try_from(map).ok())
        .and_then(|array| array.get(&counter::CALIBRATION_HITS, 0).ok())
        .map(|v| v.iter().sum())
        .unwrap_or(0)
}

/// Extra ns per call with the probe attached (best of several rounds each
/// way), checked against the probe's own hit counter.
pub(super) fn cost_per_hit_ns(ebpf: &mut Ebpf) -> Result<f64, ProbeError> {
    let offset = own_file_offset()?;
    let pid = NonZeroU32::new(std::process::id()).ok_or(std::io::Error::other("PID 0"))?;
    let bare = (0..ROUNDS).map(|_| timed_calls()).min().unwrap_or_default();
    let hits_before = calibration_hits(ebpf);
    let program = program_by_name(ebpf, "calibrate")?;
    if program.fd().is_err() {
        program.load().map_err(|e| ProbeError::Load(format!("calibrate: {e}")))?;
    }
    let link = program
        .attach(offset, "/proc/self/exe", UProbeScope::OneProcess(pid))
        .map_err(|e| ProbeError::Load(format!("calibration probe: {}", error_chain(&e))))?;
    let probed = (0..ROUNDS).map(|_| timed_calls()).min().unwrap_or_default();
    program.detach(link).map_err(|e| ProbeError::Load(format!("calibration probe: {e}")))?;
    let hits = calibration_hits(ebpf) - hits_before;
    if hits < CALLS * ROUNDS as u64 {
        return Err(ProbeError::Load(format!(
            "calibration probe fired {hits} times for {} calls",
            CALLS * ROUNDS as u64
        )));
    }
    Ok(probed.saturating_sub(bare).as_nanos() as f64 / CALLS as f64)
}
