//! A pruned copy of a Go binary's DWARF: only the top-level entries that
//! deferscope reads (the runtime structs it computes offsets from and the
//! `runtime.*` constants), each unit's root replaced by a bare compile unit.
//! From ~1.5 MB of `.debug_info` to a few tens of KB that still parse the
//! same way (references between entries are left dangling: the reader does
//! not follow them).
use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};

use super::elf::{Elf, cstr_at, u16_at, u32_at};

const DW_TAG_COMPILE_UNIT: u64 = 0x11;
const DW_TAG_STRUCTURE_TYPE: u64 = 0x13;
const DW_TAG_CONSTANT: u64 = 0x27;
const DW_AT_NAME: u64 = 0x03;
const DW_FORM_STRING: u64 = 0x08;
const DW_FORM_STRP: u64 = 0x0e;
const DW_FORM_INDIRECT: u64 = 0x16;
const DW_FORM_IMPLICIT_CONST: u64 = 0x21;

/// What `goruntime::layout` reads (its `STRUCTS`).
const STRUCTS: &[&str] = &["runtime.g", "runtime.gobuf", "runtime.m", "runtime._defer", "runtime.stack"];

/// The pruned sections, uncompressed.
pub struct Pruned {
    pub abbrev: Vec<u8>,
    pub info: Vec<u8>,
    pub str: Vec<u8>,
}

struct Abbrev {
    tag: u64,
    children: bool,
    attrs: Vec<(u64, u64)>,
}

fn uleb(d: &[u8], pos: &mut usize) -> Option<u64> {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let b = *d.get(*pos)?;
        *pos += 1;
        if shift < 64 {
            v |= u64::from(b & 0x7f) << shift;
        }
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

fn write_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The abbreviation table at offset 0, and where it ends (after its 0).
fn abbrevs(d: &[u8]) -> Option<(HashMap<u64, Abbrev>, usize)> {
    let (mut table, mut pos) = (HashMap::new(), 0);
    loop {
        let code = uleb(d, &mut pos)?;
        if code == 0 {
            return Some((table, pos));
        }
        let tag = uleb(d, &mut pos)?;
        let children = *d.get(pos)? != 0;
        pos += 1;
        let mut attrs = Vec::new();
        loop {
            let (at, form) = (uleb(d, &mut pos)?, uleb(d, &mut pos)?);
            if at == 0 && form == 0 {
                break;
            }
            if form == DW_FORM_IMPLICIT_CONST {
                uleb(d, &mut pos)?; // the constant (SLEB128: same length rule)
            }
            attrs.push((at, form));
        }
        table.insert(code, Abbrev { tag, children, attrs });
    }
}

/// Skips one attribute value; returns its inline string when it is one.
fn skip_form<'a>(d: &'a [u8], pos: &mut usize, form: u64, addr_size: usize, strs: &'a [u8]) -> Option<Option<&'a str>> {
    let fixed = |n: usize, pos: &mut usize| {
        *pos += n;
        Some(None)
    };
    match form {
        0x01 => fixed(addr_size, pos),                                                 // addr
        0x0b | 0x0c | 0x11 | 0x25 | 0x29 => fixed(1, pos),                             // data1 flag ref1 strx1 addrx1
        0x05 | 0x12 | 0x26 | 0x2a => fixed(2, pos),                                    // data2 ref2 strx2 addrx2
        0x27 | 0x2b => fixed(3, pos),                                                  // strx3 addrx3
        0x06 | 0x10 | 0x13 | 0x17 | 0x1c | 0x1d | 0x1f | 0x28 | 0x2c => fixed(4, pos), // data4 ref_addr ref4 sec_offset ...
        0x07 | 0x14 | 0x20 | 0x24 => fixed(8, pos),                                    // data8 ref8 ref_sig8 ref_sup8
        0x1e => fixed(16, pos),                                                        // data16
        0x19 | DW_FORM_IMPLICIT_CONST => Some(None),                                   // flag_present implicit_const
        0x0d | 0x0f | 0x15 | 0x1a | 0x1b | 0x22 | 0x23 => {
            uleb(d, pos)?; // sdata udata ref_udata strx addrx loclistx rnglistx
            Some(None)
        }
        DW_FORM_STRING => {
            let s = cstr_at(d, *pos)?;
            *pos += s.len() + 1;
            Some(Some(s))
        }
        DW_FORM_STRP => {
            let off = u32_at(d, *pos)? as usize;
            *pos += 4;
            Some(cstr_at(strs, off))
        }
        0x0a => {
            let n = usize::from(*d.get(*pos)?);
            fixed(1 + n, pos)
        }
        0x03 => {
            let n = usize::from(u16_at(d, *pos)?);
            fixed(2 + n, pos)
        }
        0x04 => {
            let n = u32_at(d, *pos)? as usize;
            fixed(4 + n, pos)
        }
        0x09 | 0x18 => {
            let n = uleb(d, pos)? as usize; // block exprloc
            fixed(n, pos)
        }
        DW_FORM_INDIRECT => {
            let form = uleb(d, pos)?;
            skip_form(d, pos, form, addr_size, strs)
        }
        _ => None,
    }
}

/// Reads one entry at `pos`: (tag, has children, name). `None` for the null
/// entry that ends a list of siblings.
fn entry<'a>(
    d: &'a [u8],
    pos: &mut usize,
    table: &HashMap<u64, Abbrev>,
    addr_size: usize,
    strs: &'a [u8],
) -> Result<Option<(u64, bool, Option<&'a str>)>> {
    let code = uleb(d, pos).context("truncated entry")?;
    if code == 0 {
        return Ok(None);
    }
    let a = table.get(&code).with_context(|| format!("unknown abbreviation {code}"))?;
    let mut name = None;
    for &(at, form) in &a.attrs {
        let s = skip_form(d, pos, form, addr_size, strs).with_context(|| format!("form {form:#x}"))?;
        if at == DW_AT_NAME {
            name = s;
        }
    }
    Ok(Some((a.tag, a.children, name)))
}

/// Skips the children of an entry (up to and including their null entry).
fn skip_children(d: &[u8], pos: &mut usize, table: &HashMap<u64, Abbrev>, addr_size: usize) -> Result<()> {
    let mut depth = 1;
    while depth > 0 {
        match entry(d, pos, table, addr_size, &[])? {
            None => depth -= 1,
            Some((_, true, _)) => depth += 1,
            Some(_) => {}
        }
    }
    Ok(())
}

pub fn prune(elf: &Elf<'_>) -> Result<Option<Pruned>> {
    let Some(info) = elf.debug_section(".debug_info")? else { return Ok(None) };
    let abbrev = elf.debug_section(".debug_abbrev")?.context("no .debug_abbrev")?;
    let strs = elf.debug_section(".debug_str")?.unwrap_or_default();
    let (table, table_end) = abbrevs(&abbrev).context("malformed .debug_abbrev")?;
    let cu_code = table.keys().max().copied().unwrap_or(0) + 1;
    let mut out_info = Vec::new();
    let mut pos = 0;
    while pos < info.len() {
        let unit_len = u32_at(&info, pos).context("unit length")? as usize;
        if unit_len >= 0xffff_fff0 {
            bail!("64-bit DWARF");
        }
        let end = pos + 4 + unit_len;
        let unit = info.get(pos..end).context("unit past the end")?;
        let version = u16_at(unit, 4).context("unit version")?;
        let (header_len, addr_size, abbrev_off) = if version >= 5 {
            (12, usize::from(unit[7]), u32_at(unit, 8))
        } else {
            (11, usize::from(unit[10]), u32_at(unit, 6))
        };
        if abbrev_off != Some(0) {
            // A C unit of a cgo binary, with its own table: nothing for us.
            pos = end;
            continue;
        }
        let mut p = header_len;
        let root = entry(unit, &mut p, &table, addr_size, &strs)?.context("unit without a root")?;
        let mut kept = Vec::new();
        if root.1 {
            loop {
                let start = p;
                let Some((tag, children, name)) = entry(unit, &mut p, &table, addr_size, &strs)? else { break };
                if children {
                    skip_children(unit, &mut p, &table, addr_size)?;
                }
                let name = name.unwrap_or_default();
                let keep = (tag == DW_TAG_STRUCTURE_TYPE && STRUCTS.contains(&name))
                    || (tag == DW_TAG_CONSTANT && name.starts_with("runtime."));
                if keep {
                    kept.extend_from_slice(&unit[start..p]);
                }
            }
        }
        if !kept.is_empty() {
            let mut body = unit[4..header_len].to_vec();
            write_uleb(&mut body, cu_code);
            body.extend_from_slice(b"runtime\0");
            body.extend_from_slice(&kept);
            body.push(0);
            out_info.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out_info.extend_from_slice(&body);
        }
        pos = end;
    }
    // The bare root's abbreviation goes at the end of the table.
    let mut out_abbrev = abbrev[..table_end - 1].to_vec();
    write_uleb(&mut out_abbrev, cu_code);
    write_uleb(&mut out_abbrev, DW_TAG_COMPILE_UNIT);
    out_abbrev.push(1);
    out_abbrev.extend_from_slice(&[DW_AT_NAME as u8, DW_FORM_STRING as u8, 0, 0, 0]);
    // Names may point into .debug_str: keep it when some entry uses it.
    let uses_strp = table.values().any(|a| a.attrs.iter().any(|&(_, f)| f == DW_FORM_STRP));
    Ok(Some(Pruned { abbrev: out_abbrev, info: out_info, str: if uses_strp { strs } else { Vec::new() } }))
}

/// The raw-sections input of the `dwarf` fuzz target.
pub fn raw_input(p: &Pruned) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(p.abbrev.len() as u32).to_le_bytes());
    out.extend_from_slice(&(p.str.len() as u32).to_le_bytes());
    out.extend_from_slice(&p.abbrev);
    out.extend_from_slice(&p.str);
    out.extend_from_slice(&p.info);
    out
}
