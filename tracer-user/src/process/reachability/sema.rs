//! The semaphore table (`runtime.semtable`, `runtime/sema.go`): where
//! goroutines blocked in `sync.Mutex.Lock`, `sync.RWMutex.Lock`/`RLock`,
//! `sync.WaitGroup.Wait` (and runtime semaphores, "semacquire") wait.
//!
//! Before Go 1.26 the runtime does not link such a waiter's sudog from
//! `g.waiting`: the sudog sits only in the treap of one of the table's
//! `semTabSize` `semaRoot`s (`prev`/`next` children, `parent`), keyed by
//! `elem`, the address of the semaphore word inside the Mutex, RWMutex or
//! WaitGroup; waiters on the same address hang off the treap node on
//! `waitlink`. Walking the table maps each waiter's `g` to that address.
//!
//! The table is a global, so tracing it marks every waiting sudog and,
//! through `elem`, every semaphore's object: each waiting sudog's `c` and
//! `elem` words are therefore masked, as `sudog_wait` masks those of
//! `g.waiting` sudogs (Go's own leak check hides the same words).
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::{MAX_SUDOGS, Masked, Reader, ScanError, StructKind};
use crate::{
    goruntime::layout::ReachLayout,
    process::memory::{ReadMemory, field_u64},
};

/// `semTabSize` in `runtime/sema.go` (251 in every supported version).
pub(super) const SEMTAB_SIZE: u64 = 251;

/// The offsets of a sudog's words never traced: `c` and `elem` (and, since
/// Go 1.26, the `uintptr` copy that follows each: they are
/// `maybeTraceablePtr`s).
pub(super) fn sudog_masked_words(reach: &ReachLayout) -> [Option<u64>; 4] {
    let second = |off: u64| Some(off + 8).filter(|_| off + 16 <= reach.sudog_size);
    [Some(reach.sudog_c), second(reach.sudog_c), Some(reach.sudog_elem), second(reach.sudog_elem)]
}

/// The semaphore waiters: `g` address → the semaphore address it waits
/// on. Every sudog found goes to `masked`: its `c` and `elem` and the slack
/// of its heap object are never traced.
///
/// The target runs while the table is read: a sudog whose `elem` does not
/// hash to the root it was found under (`semroot`: `(addr >> 3) % 251`), or
/// that cannot be read, is dropped together with its subtree, so its
/// waiter counts as maybe-runnable. A waiter read twice with different
/// addresses keeps neither (a torn read never proves anything).
pub(super) fn semtable_waiters<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    reach: &ReachLayout,
    semtable: u64,
    masked: &mut Masked,
) -> Result<HashMap<u64, u64>, ScanError> {
    let stride = reach.semtable_size / SEMTAB_SIZE;
    // A root is a padded semaRoot: a cache line or two, never pages.
    if stride < reach.semaroot_treap + 8 || stride > 4096 || !reach.semtable_size.is_multiple_of(SEMTAB_SIZE) {
        return Err(ScanError::Torn(format!("semTable of {} bytes", reach.semtable_size)));
    }
    let table = reader.read(semtable, reach.semtable_size)?;
    let mut waiters: HashMap<u64, u64> = HashMap::default();
    let mut torn: HashSet<u64> = HashSet::default();
    let mut seen: HashSet<u64> = HashSet::default();
    for root in 0..SEMTAB_SIZE {
        let treap = field_u64(&table, root * stride + reach.semaroot_treap).unwrap_or(0);
        let mut todo = vec![treap];
        while let Some(node) = todo.pop() {
            if node == 0 || !seen.insert(node) {
                continue;
            }
            if seen.len() > MAX_SUDOGS * 16 {
                return Err(ScanError::Torn("semaphore table: too many sudogs".into()));
            }
            let Ok(record) = reader.read(node, reach.sudog_size) else { continue };
            let elem = field_u64(&record, reach.sudog_elem).unwrap_or(0);
            if elem == 0 || (elem >> 3) % SEMTAB_SIZE != root {
                continue;
            }
            let mut waiter = Some((node, record.clone()));
            let mut chain = 0;
            while let Some((sg, rec)) = waiter.take() {
                chain += 1;
                let g = field_u64(&rec, reach.sudog_g).unwrap_or(0);
                if g != 0 && field_u64(&rec, reach.sudog_elem) == Some(elem) {
                    masked.add_struct(sg, StructKind::Sudog);
                    if waiters.insert(g, elem).is_some_and(|prev| prev != elem) {
                        torn.insert(g);
                    }
                }
                let next = field_u64(&rec, reach.sudog_waitlink).unwrap_or(0);
                if next != 0 && chain < MAX_SUDOGS && seen.insert(next) {
                    waiter = reader.read(next, reach.sudog_size).ok().map(|r| (next, r));
                }
            }
            todo.push(field_u64(&record, reach.sudog_prev).unwrap_or(0));
            todo.push(field_u64(&record, reach.sudog_next).unwrap_or(0));
        }
    }
    waiters.retain(|g, _| !torn.contains(g));
    Ok(waiters)
}

/// Largest span read while looking for Cond waiters' sudogs.
const MAX_SUDOG_SPAN: u64 = 1 << 20;

/// `sync.Cond.Wait` before Go 1.26 (`notifyListWait`, `runtime/sema.go`):
/// the waiter's sudog is linked from nowhere but the Cond's `notifyList`
/// (`head`, then the previous waiter's `next`, and `tail`): not from
/// `g.waiting`, not from the semaphore table, not from the P's sudog cache
/// (`acquireSudog` clears the slot it takes). So the sudog is reachable
/// exactly when the notify list is, and the sudog itself is the waiter's
/// primitive.
///
/// The sudog is found among the heap objects of the sudog's size class
/// (every scan span whose element size is in `[sudog_size, sudog_size +
/// 32]`, a superset) as an object whose `g` word is the waiter and whose
/// `c` and `elem` are nil (a Cond sudog sets neither). Free slots and
/// other objects may match too: every match becomes a primitive of the
/// waiter, and one marked match makes it reachable, so a wrong match can
/// only hide a leak. No match: the waiter may run.
pub(super) fn cond_sudogs<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    heap: &super::Heap,
    reach: &ReachLayout,
    waiters: &HashSet<u64>,
) -> Result<HashMap<u64, Vec<u64>>, ScanError> {
    let mut found: HashMap<u64, Vec<u64>> = HashMap::default();
    if waiters.is_empty() {
        return Ok(found);
    }
    let size = reach.sudog_size;
    for s in heap.spans.iter().filter(|s| !s.noscan && (size..=size + 32).contains(&s.elemsize)) {
        if s.end - s.start > MAX_SUDOG_SPAN {
            return Ok(HashMap::default()); // not a sudog span: prove no Cond wait
        }
        let bytes = reader.read(s.start, s.end - s.start)?;
        for (k, obj) in bytes.chunks_exact(s.elemsize as usize).enumerate() {
            let g = field_u64(obj, reach.sudog_g).unwrap_or(0);
            if g == 0 || !waiters.contains(&g) {
                continue;
            }
            let nil = |off: u64| field_u64(obj, off) == Some(0);
            if nil(reach.sudog_c) && nil(reach.sudog_elem) {
                found.entry(g).or_default().push(s.start + k as u64 * s.elemsize);
            }
        }
    }
    Ok(found)
}
