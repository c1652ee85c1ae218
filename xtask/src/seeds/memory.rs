//! Memory images for the `memory_scan` fuzz target: a small Go heap laid out
//! with each runtime layout of `layouts.json` (the table the scanner uses),
//! holding goroutines in several states, defer chains of every record kind
//! and frame-pointer stacks.
use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use serde_json::Value;

/// `deferscope::fuzzing::IMAGE_BASE`.
const BASE: u64 = 0xc0_0000_0000;
const G_AT: u64 = 0x100;
const G_STRIDE: u64 = 0x200;
const DEFERS_AT: u64 = 0xc00;
const DEFER_STRIDE: u64 = 0x80;
const STACKS_AT: u64 = 0x1800;
const STACK_LEN: u64 = 0x100;
const IMAGE_LEN: usize = 0x1d00;

/// One layout record, the offsets by name.
struct Layout<'a>(&'a serde_json::Map<String, Value>);

impl Layout<'_> {
    fn off(&self, name: &str) -> Option<u64> {
        self.0.get(name)?.as_u64()
    }
    fn status(&self, name: &str) -> u64 {
        self.0.get("g_statuses").and_then(|s| s.get(name)).and_then(Value::as_u64).unwrap_or(0)
    }
}

struct Image(Vec<u8>);

impl Image {
    fn put(&mut self, at: u64, value: u64, len: usize) {
        let at = at as usize;
        self.0[at..at + len].copy_from_slice(&value.to_le_bytes()[..len]);
    }
    fn word(&mut self, at: u64, value: u64) {
        self.put(at, value, 8);
    }
}

/// `(file name, input)` for every layout: the picker byte, the flags byte,
/// then the image (see `deferscope::fuzzing::memory_scan`).
pub fn seeds(layouts_json: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let table: Value = serde_json::from_str(layouts_json).context("parsing layouts.json")?;
    let records = table.get("layouts").and_then(Value::as_array).context("layouts.json has no layouts")?;
    // The fuzz target picks among each architecture's minors, ascending.
    let mut minors: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for r in records {
        let (Some(arch), Some(minor)) = (r.get("arch").and_then(Value::as_str), r.get("minor").and_then(Value::as_u64))
        else {
            continue;
        };
        minors.entry(arch).or_default().push(minor);
    }
    minors.values_mut().for_each(|m| {
        m.sort_unstable();
        m.dedup();
    });
    let mut out = Vec::new();
    for (n, r) in records.iter().enumerate() {
        let l = Layout(r.as_object().context("layout record")?);
        let arch = r.get("arch").and_then(Value::as_str).context("arch")?;
        let minor = r.get("minor").and_then(Value::as_u64).context("minor")?;
        let index = minors[arch].iter().position(|&m| m == minor).context("minor")? as u8;
        let pick = index | if arch == "arm64" { 0x80 } else { 0 };
        let flags = (n % 2) as u8;
        let mut input = vec![pick, flags];
        input.extend_from_slice(&image(&l).with_context(|| format!("go1.{minor} {arch}"))?);
        out.push((format!("go1.{minor}-{arch}"), input));
    }
    Ok(out)
}

fn image(l: &Layout<'_>) -> Result<Vec<u8>> {
    let req = |name: &str| l.off(name).with_context(|| format!("no {name}"));
    let mut m = Image(vec![0; IMAGE_LEN]);
    let goroutines = 5u64;
    m.word(0, BASE + 0x40);
    m.word(8, goroutines);
    m.word(16, goroutines);
    m.word(24, goroutines); // allglen
    let mut next_defer = DEFERS_AT;
    let mut defer = |m: &mut Image, pc: u64, link: u64, set: &[(u64, u64, usize)]| -> Result<u64> {
        let at = next_defer;
        next_defer += DEFER_STRIDE;
        m.word(at + req("defer_pc")?, pc);
        m.word(at + req("defer_fn")?, BASE + 0x1cf0); // a funcval
        m.word(at + req("defer_link")?, link);
        m.word(at + req("defer_sp")?, BASE + STACKS_AT);
        for &(off, v, len) in set {
            m.put(at + off, v, len);
        }
        Ok(BASE + at)
    };
    // The funcval pending records point at: its first word is the code.
    m.word(0x1cf0, 0x40_2000);
    for k in 0..goroutines {
        let g = G_AT + k * G_STRIDE;
        m.word(0x40 + 8 * k, BASE + g);
        let status = ["_Gwaiting", "_Grunning", "_Gdead", "_Gwaiting", "_Gsyscall"][k as usize];
        m.put(g + req("g_atomicstatus")?, l.status(status), 4);
        m.word(g + req("g_goid")?, k + 1);
        m.put(g + req("g_waitreason")?, 2 + k, 1);
        m.word(g + req("g_gopc")?, 0x40_1000 + 0x10 * k);
        m.word(g + req("g_startpc")?, 0x40_1800 + 0x10 * k);
        if let Some(off) = l.off("g_parent_goid") {
            m.word(g + off, 1);
        }
        if let Some(off) = l.off("g_tracking_seq") {
            m.put(g + off, 7, 1);
        }
        // A stack of three frame records: [caller's fp, return address].
        let lo = STACKS_AT + k * STACK_LEN;
        m.word(g + req("g_stack_lo")?, BASE + lo);
        m.word(g + req("g_stack_hi")?, BASE + lo + STACK_LEN);
        let sched = req("g_sched")?;
        for (i, fp) in [0x20u64, 0x50, 0x90].into_iter().enumerate() {
            let next = [0x50u64, 0x90, 0][i];
            m.word(lo + fp, if next == 0 { 0 } else { BASE + lo + next });
            m.word(lo + fp + 8, 0x40_1100 + 0x40 * i as u64);
        }
        m.word(g + sched + req("gobuf_pc")?, 0x40_1050);
        m.word(g + sched + req("gobuf_sp")?, BASE + lo + 0x10);
        m.word(g + sched + req("gobuf_bp")?, BASE + lo + 0x20);
        // Defer chains: three calls (one on the heap); a running one; a
        // range-over-func holder with two pending records (Go 1.22+) or a
        // synthetic open-coded record (before).
        let heap = [(req("defer_heap")?, 1, 1)];
        let head = match k {
            0 => {
                let d1 = defer(&mut m, 0x40_1200, 0, &[])?;
                let d2 = defer(&mut m, 0x40_1210, d1, &heap)?;
                defer(&mut m, 0x40_1220, d2, &[])?
            }
            1 => defer(&mut m, 0x40_1230, 0, &[])?,
            3 => {
                let call = defer(&mut m, 0x40_1240, 0, &[])?;
                match (l.off("defer_rangefunc"), l.off("defer_head"), l.off("defer_open_defer")) {
                    (Some(rangefunc), Some(head_off), _) => {
                        let p1 = defer(&mut m, 0, 1, &[])?; // 1: the drained-list sentinel
                        let p2 = defer(&mut m, 0, p1, &[])?;
                        m.word(0x1ce8, p2); // *head: the pending list
                        defer(&mut m, 0, call, &[(rangefunc, 1, 1), (head_off, BASE + 0x1ce8, 8)])?
                    }
                    (_, _, Some(open)) => defer(&mut m, 0, call, &[(open, 1, 1)])?,
                    _ => call,
                }
            }
            _ => 0,
        };
        m.word(g + req("g_defer")?, head);
    }
    Ok(m.0)
}
