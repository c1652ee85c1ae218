//! Runtime struct layouts and `waitReason` constants from the binary's DWARF.
//!
//! Go emits DWARF for every runtime type (`runtime.g`, …) with member
//! offsets, and a `DW_TAG_constant` for each package-level constant
//! (`runtime.waitReasonChanReceive`). Since Go 1.11 the sections are zlib
//! compressed (SHF_COMPRESSED, or `.zdebug_*` before 1.20-ish); `object`
//! exposes both forms through `compressed_data`.

use std::borrow::Cow;
use std::collections::HashMap;

use gimli::{AttributeValue, EndianSlice, LittleEndian};
use object::read::elf::ElfFile64;
use object::{CompressionFormat, Endianness, Object, ObjectSection};

use super::GoBinError;

/// Upper bound on a decompressed DWARF section (guards against zip bombs).
const MAX_SECTION: u64 = 1 << 30;

/// Struct name → (byte size, member name → offset).
pub(crate) type Structs = HashMap<String, (u64, HashMap<String, u64>)>;

pub(crate) struct DwarfFacts {
    pub structs: Structs,
    /// The runtime's package-level constants: (name without `runtime.`,
    /// value). Every one is kept; `goruntime::layout` picks what it knows.
    pub runtime_consts: Vec<(String, i64)>,
}

fn dwarf_err(e: impl std::fmt::Display) -> GoBinError {
    GoBinError::Malformed { what: "DWARF", detail: e.to_string() }
}

pub(crate) fn has_dwarf(data: &[u8]) -> bool {
    ElfFile64::<Endianness>::parse(data)
        .map(|f| f.section_by_name(".debug_info").or_else(|| f.section_by_name(".zdebug_info")).is_some())
        .unwrap_or(false)
}

fn load_section<'a>(file: &ElfFile64<'a, Endianness>, name: &str) -> Result<Cow<'a, [u8]>, GoBinError> {
    let zname = name.strip_prefix('.').map(|n| format!(".z{n}"));
    let Some(sec) = file.section_by_name(name).or_else(|| zname.and_then(|z| file.section_by_name(&z))) else {
        return Ok(Cow::Borrowed(&[]));
    };
    let c = sec.compressed_data().map_err(dwarf_err)?;
    match c.format {
        CompressionFormat::None => Ok(Cow::Borrowed(c.data)),
        CompressionFormat::Zlib => {
            if c.uncompressed_size > MAX_SECTION {
                return Err(dwarf_err(format!("{name} claims {} bytes", c.uncompressed_size)));
            }
            let out = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(c.data, c.uncompressed_size as usize)
                .map_err(|e| dwarf_err(format!("{name}: zlib: {e:?}")))?;
            Ok(Cow::Owned(out))
        }
        other => Err(dwarf_err(format!("{name}: unsupported compression {other:?}"))),
    }
}

/// Collects the named structs and the `runtime.*` constants.
pub(crate) fn read_facts(data: &[u8], wanted: &[&str]) -> Result<DwarfFacts, GoBinError> {
    let file = ElfFile64::<Endianness>::parse(data).map_err(dwarf_err)?;
    let owned = gimli::DwarfSections::load(|id| load_section(&file, id.name()))?;
    facts_from_sections(&owned, wanted)
}

/// [`read_facts`] on sections already taken out of the file (and inflated).
pub(crate) fn facts_from_sections<T: AsRef<[u8]>>(
    sections: &gimli::DwarfSections<T>,
    wanted: &[&str],
) -> Result<DwarfFacts, GoBinError> {
    let dwarf = sections.borrow(|s| EndianSlice::new(s.as_ref(), LittleEndian));
    let mut structs = Structs::new();
    let mut consts = Vec::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(dwarf_err)? {
        let unit = dwarf.unit(header).map_err(dwarf_err)?;
        let mut entries = unit.entries();
        while let Some((_, entry)) = entries.next_dfs().map_err(dwarf_err)? {
            let tag = entry.tag();
            // Array types (`runtime.semTable`) are wanted for their size only.
            if tag != gimli::DW_TAG_structure_type && tag != gimli::DW_TAG_constant && tag != gimli::DW_TAG_array_type {
                continue;
            }
            let Some(name_attr) = entry.attr_value(gimli::DW_AT_name).ok().flatten() else { continue };
            let Ok(name) = dwarf.attr_string(&unit, name_attr) else { continue };
            let name = name.to_string_lossy();
            if tag == gimli::DW_TAG_constant {
                if let Some(short) = name.strip_prefix("runtime.") {
                    let v = entry.attr_value(gimli::DW_AT_const_value).ok().flatten().and_then(|v| match v {
                        AttributeValue::Sdata(s) => Some(s),
                        other => other.udata_value().map(|u| u as i64),
                    });
                    if let Some(v) = v {
                        consts.push((short.to_string(), v));
                    }
                }
                continue;
            }
            if !wanted.contains(&name.as_ref()) || structs.contains_key(name.as_ref()) {
                continue;
            }
            let size =
                entry.attr_value(gimli::DW_AT_byte_size).ok().flatten().and_then(|v| v.udata_value()).unwrap_or(0);
            let mut members = HashMap::new();
            let mut tree = unit.entries_tree(Some(entry.offset())).map_err(dwarf_err)?;
            let root = tree.root().map_err(dwarf_err)?;
            let mut children = root.children();
            while let Some(child) = children.next().map_err(dwarf_err)? {
                let e = child.entry();
                if e.tag() != gimli::DW_TAG_member {
                    continue;
                }
                let Some(n) = e.attr_value(gimli::DW_AT_name).ok().flatten() else { continue };
                let Ok(n) = dwarf.attr_string(&unit, n) else { continue };
                let off = e.attr_value(gimli::DW_AT_data_member_location).ok().flatten().and_then(|v| v.udata_value());
                if let Some(off) = off {
                    members.insert(n.to_string_lossy().into_owned(), off);
                }
            }
            structs.insert(name.into_owned(), (size, members));
        }
    }
    Ok(DwarfFacts { structs, runtime_consts: consts })
}
