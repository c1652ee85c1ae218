//! Runtime PCs → source sites, through the target's binary and load bias.
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use crate::{
    aggregate::{Symbolizer, model::Site},
    gobin::{GoBinary, SourceLine},
    goruntime::defers,
};

pub struct BinarySymbols {
    binary: Arc<GoBinary>,
    /// Runtime address − static address (PIE).
    bias: u64,
    call_sites: HashMap<u64, Option<Site>>,
    frames: HashMap<(u64, bool), Vec<Site>>,
    functions: HashMap<u64, Option<Arc<str>>>,
    deferred_calls: HashMap<u64, Option<Site>>,
    globals: HashMap<u64, Option<Arc<str>>>,
}

impl BinarySymbols {
    pub fn new(binary: Arc<GoBinary>, bias: u64) -> Self {
        Self {
            binary,
            bias,
            call_sites: HashMap::default(),
            frames: HashMap::default(),
            functions: HashMap::default(),
            deferred_calls: HashMap::default(),
            globals: HashMap::default(),
        }
    }
}

impl Symbolizer for BinarySymbols {
    fn call_site(&mut self, return_pc: u64) -> Option<Site> {
        let (binary, bias) = (&self.binary, self.bias);
        self.call_sites
            .entry(return_pc)
            // The return address is past the CALL; one byte back is inside it
            // (what Go's own tracebacks do for caller frames).
            .or_insert_with(|| binary.symbolize(return_pc.wrapping_sub(bias).wrapping_sub(1)).map(defer_statement_site))
            .clone()
    }

    fn frames(&mut self, pc: u64, is_return_address: bool) -> Vec<Site> {
        let (binary, bias) = (&self.binary, self.bias);
        let static_pc = pc.wrapping_sub(bias).wrapping_sub(u64::from(is_return_address));
        self.frames
            .entry((pc, is_return_address))
            .or_insert_with(|| binary.symbolize_frames(static_pc).into_iter().map(Site::from).collect())
            .clone()
    }

    fn deferred_call(&mut self, code_pc: u64) -> Option<Site> {
        let (binary, bias) = (&self.binary, self.bias);
        self.deferred_calls
            .entry(code_pc)
            .or_insert_with(|| binary.deferred_call(code_pc.wrapping_sub(bias)).map(Site::from))
            .clone()
    }

    fn global_at(&mut self, addr: u64) -> Option<Arc<str>> {
        let (binary, bias) = (&self.binary, self.bias);
        self.globals.entry(addr).or_insert_with(|| binary.global_name(addr.wrapping_sub(bias)).map(Arc::from)).clone()
    }

    fn function_at(&mut self, pc: u64) -> Option<Arc<str>> {
        let (binary, bias) = (&self.binary, self.bias);
        self.functions.entry(pc).or_insert_with(|| binary.function_name(pc.wrapping_sub(bias)).map(Arc::from)).clone()
    }
}

/// A `defer` statement's site: the compiler's wrapper closure
/// (`main.work.deferwrap1`) stands for the function holding the statement.
fn defer_statement_site(line: SourceLine) -> Site {
    Site::new(defers::defer_statement_function(&line.function), &line.file, line.line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defer_wrappers_name_their_function() {
        let wrap = SourceLine { function: "main.loop-range1.deferwrap1".into(), file: "/m.go".into(), line: 49 };
        assert_eq!(defer_statement_site(wrap), Site::new("main.loop-range1", "/m.go", 49));
        let plain = SourceLine { function: "main.work".into(), file: "/m.go".into(), line: 7 };
        assert_eq!(defer_statement_site(plain), Site::new("main.work", "/m.go", 7));
    }
}
