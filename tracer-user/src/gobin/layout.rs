//! `RuntimeLayout`: from DWARF, or from the built-in table generated from the
//! Go toolchains by `cargo xtask gen-layouts` (xtask/gen-layouts/main.go).
//! Never edit `layouts.json` by hand.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::dwarf::{DwarfFacts, Structs};
use super::{Arch, GoBinError, GoVersion, RuntimeLayout};

/// The structs `RuntimeLayout` is computed from.
pub(crate) const STRUCTS: &[&str] = &["runtime.g", "runtime.gobuf", "runtime.m", "runtime._defer", "runtime.stack"];

static TABLE_JSON: &str = include_str!("layouts.json");

#[derive(Deserialize)]
struct Table {
    layouts: Vec<Record>,
}

#[derive(Deserialize, Clone)]
struct WaitReasonRecord {
    value: u8,
    name: String,
    string: String,
}

/// One (Go minor version, arch) entry; field names mirror `RuntimeLayout`.
#[derive(Deserialize, Clone)]
struct Record {
    /// Full toolchain version the entry was generated from (`go1.24.11`).
    #[allow(dead_code)]
    go: String,
    minor: u32,
    arch: String,
    g_size: u64,
    g_stack_lo: u64,
    g_stack_hi: u64,
    g_defer: u64,
    g_panic: u64,
    g_m: u64,
    g_sched: u64,
    gobuf_sp: u64,
    gobuf_pc: u64,
    gobuf_lr: u64,
    gobuf_bp: u64,
    g_atomicstatus: u64,
    g_goid: u64,
    g_waitsince: u64,
    g_waitreason: u64,
    g_parent_goid: Option<u64>,
    g_gopc: u64,
    g_startpc: u64,
    g_tracking_seq: Option<u64>,
    m_curg: u64,
    defer_size: u64,
    defer_sp: u64,
    defer_pc: u64,
    defer_fn: u64,
    defer_link: u64,
    defer_heap: u64,
    defer_open_defer: Option<u64>,
    defer_rangefunc: Option<u64>,
    defer_head: Option<u64>,
    wait_reasons: Vec<WaitReasonRecord>,
}

fn table() -> &'static Result<Vec<Record>, String> {
    static T: OnceLock<Result<Vec<Record>, String>> = OnceLock::new();
    T.get_or_init(|| {
        serde_json::from_str::<Table>(TABLE_JSON)
            .map(|t| t.layouts)
            .map_err(|e| format!("built-in layouts.json is corrupt: {e}"))
    })
}

fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    }
}

/// Minor versions the built-in table covers for `arch`, ascending.
pub fn builtin_minors(arch: Arch) -> Vec<u32> {
    let mut v: Vec<u32> = match table() {
        Ok(t) => t.iter().filter(|r| r.arch == arch_name(arch)).map(|r| r.minor).collect(),
        Err(_) => Vec::new(),
    };
    v.sort_unstable();
    v.dedup();
    v
}

pub fn from_table(version: &GoVersion, arch: Arch) -> Result<RuntimeLayout, GoBinError> {
    let t = table().as_ref().map_err(|e| GoBinError::Other(e.clone()))?;
    let rec = t
        .iter()
        .find(|r| version.major == 1 && r.minor == version.minor && r.arch == arch_name(arch))
        .ok_or_else(|| {
            let known: Vec<String> = builtin_minors(arch).iter().map(|m| format!("1.{m}")).collect();
            GoBinError::UnsupportedVersion(format!(
                "{} on {}: the binary has no DWARF and deferscope has no built-in runtime layout for it \
                 (built-in: {}); rebuild the target without -ldflags=-s or regenerate the table with \
                 `cargo xtask gen-layouts`",
                version.raw,
                arch_name(arch),
                known.join(", ")
            ))
        })?;
    Ok(RuntimeLayout {
        g_size: rec.g_size,
        g_stack_lo: rec.g_stack_lo,
        g_stack_hi: rec.g_stack_hi,
        g_defer: rec.g_defer,
        g_panic: rec.g_panic,
        g_m: rec.g_m,
        g_sched: rec.g_sched,
        gobuf_sp: rec.gobuf_sp,
        gobuf_pc: rec.gobuf_pc,
        gobuf_lr: rec.gobuf_lr,
        gobuf_bp: rec.gobuf_bp,
        g_atomicstatus: rec.g_atomicstatus,
        g_goid: rec.g_goid,
        g_waitsince: rec.g_waitsince,
        g_waitreason: rec.g_waitreason,
        g_parent_goid: rec.g_parent_goid,
        g_gopc: rec.g_gopc,
        g_startpc: rec.g_startpc,
        g_tracking_seq: rec.g_tracking_seq,
        m_curg: rec.m_curg,
        defer_size: rec.defer_size,
        defer_sp: rec.defer_sp,
        defer_pc: rec.defer_pc,
        defer_fn: rec.defer_fn,
        defer_link: rec.defer_link,
        defer_heap: rec.defer_heap,
        defer_open_defer: rec.defer_open_defer,
        defer_rangefunc: rec.defer_rangefunc,
        defer_head: rec.defer_head,
        wait_reasons: rec.wait_reasons.iter().map(|w| (w.value, w.string.clone())).collect(),
        source: format!("table:go1.{}", rec.minor),
    })
}

/// `waitReasonXxx` → the string Go prints, from the table. For the same name
/// the newest version wins (the synctest strings changed in 1.25).
fn wait_reason_names(minor: u32) -> HashMap<String, String> {
    let mut recs: Vec<&Record> = match table() {
        Ok(t) => t.iter().collect(),
        Err(_) => Vec::new(),
    };
    // Exact version first, then newest to oldest.
    recs.sort_by_key(|r| (r.minor != minor, std::cmp::Reverse(r.minor)));
    let mut m = HashMap::new();
    for r in recs {
        for w in &r.wait_reasons {
            m.entry(w.name.clone()).or_insert_with(|| w.string.clone());
        }
    }
    m
}

fn missing(what: &str) -> GoBinError {
    GoBinError::Malformed { what: "DWARF", detail: format!("no {what}") }
}

fn member(structs: &Structs, s: &str, m: &str) -> Option<u64> {
    structs.get(s)?.1.get(m).copied()
}

fn req(structs: &Structs, s: &str, m: &str) -> Result<u64, GoBinError> {
    member(structs, s, m).ok_or_else(|| missing(&format!("{s}.{m}")))
}

fn size(structs: &Structs, s: &str) -> Result<u64, GoBinError> {
    structs.get(s).map(|x| x.0).filter(|&n| n > 0).ok_or_else(|| missing(&format!("struct {s}")))
}

/// Builds the layout from DWARF facts. `binary_strings` is the binary's own
/// `runtime.waitReasonStrings` when it could be read (index = value).
pub(crate) fn from_dwarf(
    facts: &DwarfFacts,
    version: &GoVersion,
    binary_strings: Option<&[String]>,
) -> Result<RuntimeLayout, GoBinError> {
    let s = &facts.structs;
    let g = "runtime.g";
    let sched = req(s, g, "sched")?;
    let stack = req(s, g, "stack")?;
    let names = wait_reason_names(version.minor);
    let mut wait_reasons: Vec<(u8, String)> = facts
        .wait_reason_consts
        .iter()
        .filter_map(|(name, v)| {
            let v = u8::try_from(*v).ok()?;
            let string =
                binary_strings.and_then(|b| b.get(usize::from(v)).cloned()).or_else(|| names.get(name).cloned())?;
            Some((v, string))
        })
        .collect();
    wait_reasons.sort();
    wait_reasons.dedup_by_key(|(v, _)| *v);
    Ok(RuntimeLayout {
        g_size: size(s, g)?,
        g_stack_lo: stack + req(s, "runtime.stack", "lo")?,
        g_stack_hi: stack + req(s, "runtime.stack", "hi")?,
        g_defer: req(s, g, "_defer")?,
        g_panic: req(s, g, "_panic")?,
        g_m: req(s, g, "m")?,
        g_sched: sched,
        gobuf_sp: req(s, "runtime.gobuf", "sp")?,
        gobuf_pc: req(s, "runtime.gobuf", "pc")?,
        gobuf_lr: req(s, "runtime.gobuf", "lr")?,
        gobuf_bp: req(s, "runtime.gobuf", "bp")?,
        g_atomicstatus: req(s, g, "atomicstatus")?,
        g_goid: req(s, g, "goid")?,
        g_waitsince: req(s, g, "waitsince")?,
        g_waitreason: req(s, g, "waitreason")?,
        g_parent_goid: member(s, g, "parentGoid"),
        g_gopc: req(s, g, "gopc")?,
        g_startpc: req(s, g, "startpc")?,
        g_tracking_seq: member(s, g, "trackingSeq"),
        m_curg: req(s, "runtime.m", "curg")?,
        defer_size: size(s, "runtime._defer")?,
        defer_sp: req(s, "runtime._defer", "sp")?,
        defer_pc: req(s, "runtime._defer", "pc")?,
        defer_fn: req(s, "runtime._defer", "fn")?,
        defer_link: req(s, "runtime._defer", "link")?,
        defer_heap: req(s, "runtime._defer", "heap")?,
        defer_open_defer: member(s, "runtime._defer", "openDefer"),
        defer_rangefunc: member(s, "runtime._defer", "rangefunc"),
        defer_head: member(s, "runtime._defer", "head"),
        wait_reasons,
        source: "dwarf".to_string(),
    })
}
