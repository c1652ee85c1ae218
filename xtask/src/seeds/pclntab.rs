//! A small `.gopclntab` that holds only chosen functions, re-linked: their
//! `_func` records, names, pc-value tables, files and inline trees, with
//! every offset rewritten, so that a seed a few KB long parses like the
//! real table (which is ~700 KB). Layout as in runtime/symtab.go, Go 1.18+.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context as _, Result, bail};

use super::elf::{Elf, cstr_at, u32_at, u64_at};

const MAGIC_118: u32 = 0xffff_fff0;
const MAGIC_120: u32 = 0xffff_fff1;
const HEADER_LEN: usize = 72;
const PCDATA_INL_TREE_INDEX: usize = 2;
const FUNCDATA_INL_TREE: usize = 3;

pub struct Compacted {
    pub bytes: Vec<u8>,
    /// Offsets of the tables in `bytes` (for the moduledata's slices).
    pub funcname: u64,
    pub cu: u64,
    pub filetab: u64,
    pub pctab: u64,
    pub pcln: u64,
    /// Inline trees to map: (vaddr, entries with their name offsets
    /// rewritten into the new funcnametab).
    pub inline_trees: Vec<(u64, Vec<u8>)>,
    /// [entry, end) of every wanted function: the code to keep.
    pub code: Vec<(u64, u64)>,
}

/// The header fields the compaction needs.
pub struct Header {
    pub magic: u32,
    pub nfunc: usize,
    pub text_start: u64,
    pub funcname: usize,
    pub cu: usize,
    pub filetab: usize,
    pub pctab: usize,
    pub pcln: usize,
}

impl Header {
    pub fn parse(tab: &[u8]) -> Result<Self> {
        let magic = u32_at(tab, 0).context("truncated pclntab")?;
        if magic != MAGIC_118 && magic != MAGIC_120 {
            bail!("pclntab magic {magic:#x}");
        }
        let w = |i: usize| u64_at(tab, 8 * i).context("truncated pclntab header");
        Ok(Header {
            magic,
            nfunc: w(1)? as usize,
            text_start: w(3)?,
            funcname: w(4)? as usize,
            cu: w(5)? as usize,
            filetab: w(6)? as usize,
            pctab: w(7)? as usize,
            pcln: w(8)? as usize,
        })
    }
}

fn uvarint(d: &[u8], pos: &mut usize) -> Option<u64> {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let b = *d.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift >= 64 {
            return None;
        }
    }
}

/// The values of the pc-value table at `start` and the end of its bytes.
fn pcvalues(tab: &[u8], start: usize) -> Option<(Vec<i32>, usize)> {
    let (mut pos, mut val, mut first, mut values) = (start, -1i32, true, Vec::new());
    loop {
        let uv = uvarint(tab, &mut pos)? as u32;
        if uv == 0 && !first {
            return Some((values, pos));
        }
        first = false;
        val = val.wrapping_add(((uv >> 1) as i32) ^ -((uv & 1) as i32));
        values.push(val);
        uvarint(tab, &mut pos)?;
    }
}

struct Record<'a> {
    bytes: &'a [u8],
    tail: usize,
    npcdata: usize,
    nfuncdata: usize,
}

impl<'a> Record<'a> {
    fn at(tab: &'a [u8], off: usize, new_layout: bool) -> Option<Self> {
        let tail = if new_layout { 40 } else { 36 };
        let npcdata = u32_at(tab, off + 28)? as usize;
        let nfuncdata = usize::from(*tab.get(off + tail + 3)?);
        let len = tail + 4 + 4 * npcdata + 4 * nfuncdata;
        Some(Record { bytes: tab.get(off..off + len)?, tail, npcdata, nfuncdata })
    }
    fn u32(&self, off: usize) -> u32 {
        u32_at(self.bytes, off).unwrap_or(0)
    }
    fn pcdata_at(&self, k: usize) -> usize {
        self.tail + 4 + 4 * k
    }
    fn funcdata(&self, k: usize) -> Option<u32> {
        (k < self.nfuncdata).then(|| self.u32(self.tail + 4 + 4 * self.npcdata + 4 * k)).filter(|&v| v != u32::MAX)
    }
}

/// Appends names to a new funcnametab, once each.
#[derive(Default)]
struct Names {
    bytes: Vec<u8>,
    at: HashMap<String, u32>,
}

impl Names {
    fn add(&mut self, name: &str) -> u32 {
        if let Some(&off) = self.at.get(name) {
            return off;
        }
        let off = self.bytes.len() as u32;
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.at.insert(name.to_string(), off);
        off
    }
}

/// Keeps the functions named in `wanted` and each one's successor (so that
/// every kept function's end is right), from `tab` at `vaddr`.
pub fn compact(elf: &Elf<'_>, tab: &[u8], text_start: u64, gofunc: Option<u64>, wanted: &[&str]) -> Result<Compacted> {
    let h = Header::parse(tab)?;
    let new_layout = h.magic == MAGIC_120;
    let functab = |i: usize| -> Result<(u32, u32)> {
        let o = h.pcln + 8 * i;
        Ok((u32_at(tab, o).context("functab")?, u32_at(tab, o + 4).context("functab")?))
    };
    let record = |i: usize| -> Result<Record<'_>> {
        Record::at(tab, h.pcln + functab(i)?.1 as usize, new_layout).context("_func outside the table")
    };
    let name_of = |off: u32| cstr_at(tab, h.funcname + off as usize).context("function name");
    let mut kept = BTreeSet::new();
    let mut code = Vec::new();
    for i in 0..h.nfunc {
        if wanted.contains(&name_of(record(i)?.u32(4))?) {
            kept.insert(i);
            if i + 1 < h.nfunc {
                kept.insert(i + 1);
            }
            code.push((text_start + u64::from(functab(i)?.0), text_start + u64::from(functab(i + 1)?.0)));
        }
    }
    if kept.is_empty() {
        bail!("none of the wanted functions is in the pclntab");
    }

    let mut names = Names::default();
    // Pc-value tables, copied once each; offset 0 means "none".
    let mut pctab = vec![0u8];
    let mut copied: HashMap<u32, u32> = HashMap::new();
    let mut copy_table = |off: u32, pctab: &mut Vec<u8>| -> Result<u32> {
        if off == 0 {
            return Ok(0);
        }
        if let Some(&new) = copied.get(&off) {
            return Ok(new);
        }
        let start = h.pctab + off as usize;
        let (_, end) = pcvalues(tab, start).context("truncated pc-value table")?;
        let new = pctab.len() as u32;
        pctab.extend_from_slice(&tab[start..end]);
        copied.insert(off, new);
        Ok(new)
    };

    // Files: each compilation unit gets a block of cutab entries as long as
    // the largest file number its kept functions use.
    let mut files_of_cu: BTreeMap<u32, BTreeSet<i32>> = BTreeMap::new();
    for &i in &kept {
        let r = record(i)?;
        let (files, _) = pcvalues(tab, h.pctab + r.u32(20) as usize).unwrap_or_default();
        files_of_cu.entry(r.u32(32)).or_default().extend(files.into_iter().filter(|&f| f >= 0));
    }
    let mut cutab = Vec::new();
    let mut filetab = Vec::new();
    let mut file_offs: HashMap<String, u32> = HashMap::new();
    let mut cu_base: HashMap<u32, u32> = HashMap::new();
    for (&cu, files) in &files_of_cu {
        let count = files.iter().max().map_or(0, |&m| m as usize + 1);
        cu_base.insert(cu, (cutab.len() / 4) as u32);
        for file_no in 0..count {
            let mut entry = u32::MAX;
            if files.contains(&(file_no as i32)) {
                let old = u32_at(tab, h.cu + 4 * (cu as usize + file_no)).context("cutab")?;
                if old != u32::MAX {
                    let name = cstr_at(tab, h.filetab + old as usize).context("file name")?;
                    entry = *file_offs.entry(name.to_string()).or_insert_with(|| {
                        let off = filetab.len() as u32;
                        filetab.extend_from_slice(name.as_bytes());
                        filetab.push(0);
                        off
                    });
                }
            }
            cutab.extend_from_slice(&entry.to_le_bytes());
        }
    }

    let mut records = Vec::new();
    let mut funcoffs = Vec::new();
    let mut inline_trees: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let functab_len = 8 * (kept.len() + 1);
    for &i in &kept {
        let r = record(i)?;
        let mut rec = r.bytes.to_vec();
        let mut put = |at: usize, v: u32| rec[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put(4, names.add(name_of(r.u32(4))?));
        for field in [16, 20, 24] {
            put(field, copy_table(r.u32(field), &mut pctab)?);
        }
        put(32, cu_base.get(&r.u32(32)).copied().unwrap_or(0));
        for k in 0..r.npcdata {
            put(r.pcdata_at(k), copy_table(r.u32(r.pcdata_at(k)), &mut pctab)?);
        }
        if let (Some(tree_off), Some(gofunc)) = (r.funcdata(FUNCDATA_INL_TREE), gofunc) {
            let index_table = (PCDATA_INL_TREE_INDEX < r.npcdata).then(|| r.u32(r.pcdata_at(PCDATA_INL_TREE_INDEX)));
            let max = index_table
                .filter(|&t| t != 0)
                .and_then(|t| pcvalues(tab, h.pctab + t as usize))
                .and_then(|(v, _)| v.into_iter().max())
                .unwrap_or(-1);
            let tree = gofunc + u64::from(tree_off);
            if max >= 0 && !inline_trees.contains_key(&tree) {
                let (size, name_field) = if new_layout { (16, 4) } else { (20, 12) };
                let n = max as usize + 1;
                let mut bytes = elf.read(tree, n * size).context("inline tree outside the file")?.to_vec();
                for e in 0..n {
                    let at = e * size + name_field;
                    let old = u32_at(&bytes, at).context("inline tree entry")?;
                    let new = names.add(name_of(old)?);
                    bytes[at..at + 4].copy_from_slice(&new.to_le_bytes());
                }
                inline_trees.insert(tree, bytes);
            }
        }
        while records.len() % 4 != 0 {
            records.push(0);
        }
        funcoffs.push((functab(i)?.0, (functab_len + records.len()) as u32));
        records.extend_from_slice(&rec);
    }
    let last = *kept.last().context("kept")?;
    let sentinel = functab(last + 1)?.0;

    let mut out = vec![0u8; HEADER_LEN];
    out[..8].copy_from_slice(&tab[..8]);
    let funcname = out.len();
    out.extend_from_slice(&names.bytes);
    pad(&mut out, 4);
    let cu = out.len();
    out.extend_from_slice(&cutab);
    let filetab_off = out.len();
    out.extend_from_slice(&filetab);
    let pctab_off = out.len();
    out.extend_from_slice(&pctab);
    pad(&mut out, 8);
    let pcln = out.len();
    for (entry, func) in &funcoffs {
        out.extend_from_slice(&entry.to_le_bytes());
        out.extend_from_slice(&func.to_le_bytes());
    }
    out.extend_from_slice(&sentinel.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&records);
    let words =
        [kept.len() as u64, file_offs.len() as u64, h.text_start, funcname as u64, cu as u64, filetab_off as u64];
    for (i, w) in words.into_iter().chain([pctab_off as u64, pcln as u64]).enumerate() {
        out[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
    }
    Ok(Compacted {
        bytes: out,
        funcname: funcname as u64,
        cu: cu as u64,
        filetab: filetab_off as u64,
        pctab: pctab_off as u64,
        pcln: pcln as u64,
        inline_trees: inline_trees.into_iter().collect(),
        code,
    })
}

fn pad(out: &mut Vec<u8>, to: usize) {
    while !out.len().is_multiple_of(to) {
        out.push(0);
    }
}
