//! Runtime PCs → source sites, through the target's binary and load bias.
use std::{collections::HashMap, sync::Arc};

use crate::{
    aggregate::{Symbolizer, model::Site},
    gobin::GoBinary,
};

pub struct BinarySymbols {
    binary: Arc<GoBinary>,
    /// Runtime address − static address (PIE).
    bias: u64,
    call_sites: HashMap<u64, Option<Site>>,
    exact_sites: HashMap<u64, Option<Site>>,
    frames: HashMap<(u64, bool), Vec<Site>>,
    functions: HashMap<u64, Option<String>>,
}

impl BinarySymbols {
    pub fn new(binary: Arc<GoBinary>, bias: u64) -> Self {
        Self {
            binary,
            bias,
            call_sites: HashMap::new(),
            exact_sites: HashMap::new(),
            frames: HashMap::new(),
            functions: HashMap::new(),
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
            .or_insert_with(|| binary.symbolize(return_pc.wrapping_sub(bias).wrapping_sub(1)).map(Site::from))
            .clone()
    }

    fn site_at(&mut self, pc: u64) -> Option<Site> {
        // Keyed apart from return addresses: the same value can be both.
        let (binary, bias) = (&self.binary, self.bias);
        self.exact_sites.entry(pc).or_insert_with(|| binary.symbolize(pc.wrapping_sub(bias)).map(Site::from)).clone()
    }

    fn frames(&mut self, pc: u64, is_return_address: bool) -> Vec<Site> {
        let (binary, bias) = (&self.binary, self.bias);
        let static_pc = pc.wrapping_sub(bias).wrapping_sub(u64::from(is_return_address));
        self.frames
            .entry((pc, is_return_address))
            .or_insert_with(|| binary.symbolize_frames(static_pc).into_iter().map(Site::from).collect())
            .clone()
    }

    fn function_at(&mut self, pc: u64) -> Option<String> {
        let (binary, bias) = (&self.binary, self.bias);
        self.functions
            .entry(pc)
            .or_insert_with(|| binary.function_name(pc.wrapping_sub(bias)).map(str::to_owned))
            .clone()
    }
}
