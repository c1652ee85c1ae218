// gen-layouts extracts deferscope's built-in runtime layout table.
//
// For each probe binary (built by `cargo xtask gen-layouts` with one Go
// toolchain for one GOARCH) it reads the struct layouts of runtime.g,
// runtime.gobuf, runtime.m, runtime._defer and runtime.stack and the
// runtime.waitReason* constants from DWARF, and maps each constant to the
// string Go prints by parsing that toolchain's
// GOROOT/src/runtime/runtime2.go (the waitReasonStrings table). It prints
// JSON in the shape tracer-user/src/goruntime/layout.rs deserializes.
//
// Usage: gen-layouts MINOR:FULL:ARCH:BINARY:GOROOT ...
package main

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

type waitReason struct {
	Value  uint8  `json:"value"`
	Name   string `json:"name"`
	String string `json:"string"`
}

// layout mirrors goruntime::RuntimeLayout, which deserialises these records
// directly (field names must match tracer-user/src/goruntime/layout.rs).
type layout struct {
	Go            string  `json:"go"`
	Minor         int     `json:"minor"`
	Arch          string  `json:"arch"`
	GSize         uint64  `json:"g_size"`
	GStackLo      uint64  `json:"g_stack_lo"`
	GStackHi      uint64  `json:"g_stack_hi"`
	GDefer        uint64  `json:"g_defer"`
	GPanic        uint64  `json:"g_panic"`
	GM            uint64  `json:"g_m"`
	GSched        uint64  `json:"g_sched"`
	GobufSP       uint64  `json:"gobuf_sp"`
	GobufPC       uint64  `json:"gobuf_pc"`
	GobufLR       uint64  `json:"gobuf_lr"`
	GobufBP       uint64  `json:"gobuf_bp"`
	GAtomicstatus uint64  `json:"g_atomicstatus"`
	GGoid         uint64  `json:"g_goid"`
	GWaitsince    uint64  `json:"g_waitsince"`
	GWaitreason   uint64  `json:"g_waitreason"`
	GParentGoid   *uint64 `json:"g_parent_goid"`
	GGopc         uint64  `json:"g_gopc"`
	GStartpc      uint64  `json:"g_startpc"`
	GTrackingSeq  *uint64 `json:"g_tracking_seq"`
	MCurg         uint64  `json:"m_curg"`
	DeferSize     uint64  `json:"defer_size"`
	DeferSP       uint64  `json:"defer_sp"`
	DeferPC       uint64  `json:"defer_pc"`
	DeferFn       uint64  `json:"defer_fn"`
	DeferLink     uint64  `json:"defer_link"`
	DeferHeap     uint64  `json:"defer_heap"`
	DeferOpen     *uint64 `json:"defer_open_defer"`
	DeferRange    *uint64 `json:"defer_rangefunc"`
	DeferHead     *uint64 `json:"defer_head"`
	// The _G* goroutine status constants of runtime2.go, by name.
	GStatuses   map[string]int64 `json:"g_statuses"`
	WaitReasons []waitReason     `json:"wait_reasons"`
	// What the out-of-process reachability scan (leak proofs) reads.
	Reach reach `json:"reach"`
}

// reach mirrors goruntime::layout::ReachLayout.
type reach struct {
	GWaiting       uint64 `json:"g_waiting"`
	MheapAllspans  uint64 `json:"mheap_allspans"`
	MspanSize      uint64 `json:"mspan_size"`
	MspanStart     uint64 `json:"mspan_start"`
	MspanNpages    uint64 `json:"mspan_npages"`
	MspanElemsize  uint64 `json:"mspan_elemsize"`
	MspanState     uint64 `json:"mspan_state"`
	MspanSpanclass uint64 `json:"mspan_spanclass"`
	MspanSpecials  uint64 `json:"mspan_specials"`
	// freeindex and nelems are adjacent (uintptr up to 1.21, uint16 since):
	// the reader takes their width from the distance between them.
	MspanFreeindex uint64 `json:"mspan_freeindex"`
	MspanNelems    uint64 `json:"mspan_nelems"`
	MspanAllocBits uint64 `json:"mspan_alloc_bits"`
	SpecialNext    uint64 `json:"special_next"`
	SpecialOffset  uint64 `json:"special_offset"`
	SpecialKind    uint64 `json:"special_kind"`
	// The special kinds the collector treats as roots (markrootSpans);
	// their values change between versions.
	SpecialKindFinalizer  *int64 `json:"special_kind_finalizer"`
	SpecialKindWeakHandle *int64 `json:"special_kind_weak_handle"`
	SpecialKindCleanup    *int64 `json:"special_kind_cleanup"`
	SudogSize             uint64 `json:"sudog_size"`
	SudogC                uint64 `json:"sudog_c"`
	SudogElem             uint64 `json:"sudog_elem"`
	SudogWaitlink         uint64 `json:"sudog_waitlink"`
	// The semaphore table (sema.go): semTabSize padded semaRoots, each a
	// treap of sudogs (prev/next/parent) keyed by elem, same-elem waiters
	// on waitlink. SemtableSize is the byte size of runtime.semTable.
	SudogG        uint64 `json:"sudog_g"`
	SudogPrev     uint64 `json:"sudog_prev"`
	SudogNext     uint64 `json:"sudog_next"`
	SemarootTreap uint64 `json:"semaroot_treap"`
	SemtableSize  uint64 `json:"semtable_size"`
	// moduledata: the data and bss ranges and their pointer masks (bitvector:
	// n int32, bytedata *uint8), the precise global roots.
	ModuledataData       uint64 `json:"moduledata_data"`
	ModuledataEdata      uint64 `json:"moduledata_edata"`
	ModuledataBss        uint64 `json:"moduledata_bss"`
	ModuledataEbss       uint64 `json:"moduledata_ebss"`
	ModuledataGcdatamask uint64 `json:"moduledata_gcdatamask"`
	ModuledataGcbssmask  uint64 `json:"moduledata_gcbssmask"`
	// p.wbBuf and p.gcw with their types' sizes: the GC's buffers inside
	// each P, integers to Go's GC, never traced.
	PWbbuf     uint64 `json:"p_wbbuf"`
	WbbufSize  uint64 `json:"wbbuf_size"`
	PGcw       uint64 `json:"p_gcw"`
	GcworkSize uint64 `json:"gcwork_size"`
	// m.g0, m.gsignal and m.alllink: the Ms' own goroutines, not in allgs,
	// whose g.stack words are never traced either.
	MG0      uint64 `json:"m_g0"`
	MGsignal uint64 `json:"m_gsignal"`
	MAlllink uint64 `json:"m_alllink"`
	// p.pcache (a pageCache: its base is a uintptr to a heap chunk, often
	// the address of the chunk's first object), never traced either.
	PPcache       uint64 `json:"p_pcache"`
	PagecacheSize uint64 `json:"pagecache_size"`
	// p.xRegs (Go 1.26+, amd64 and arm64) and the size of runtime.xRegPerP:
	// the scratch space where asynchronous preemption saves vector
	// registers, which hold stale copies of pointers; bytes to Go's GC.
	PXregs       *uint64 `json:"p_xregs"`
	XregperpSize uint64  `json:"xregperp_size"`
}

type structInfo struct {
	size    int64
	members map[string]int64
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gen-layouts MINOR:FULL:ARCH:BINARY:GOROOT ...")
		os.Exit(2)
	}
	var out []layout
	for _, spec := range os.Args[1:] {
		parts := strings.SplitN(spec, ":", 5)
		if len(parts) != 5 {
			fail("bad spec %q", spec)
		}
		minor, err := strconv.Atoi(parts[0])
		if err != nil {
			fail("bad minor in %q", spec)
		}
		l, err := extract(minor, parts[1], parts[2], parts[3], parts[4])
		if err != nil {
			fail("%s %s: %v", parts[1], parts[2], err)
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Minor != out[j].Minor {
			return out[i].Minor < out[j].Minor
		}
		return out[i].Arch < out[j].Arch
	})
	// arm64 and amd64 layouts are expected to be byte-identical; both are
	// kept, but say so loudly when that stops being true.
	byMinor := map[int]map[string]string{}
	for _, l := range out {
		c := l
		c.Arch = ""
		b, _ := json.Marshal(c)
		if byMinor[l.Minor] == nil {
			byMinor[l.Minor] = map[string]string{}
		}
		byMinor[l.Minor][l.Arch] = string(b)
	}
	for minor, m := range byMinor {
		if a, b := m["amd64"], m["arm64"]; a != "" && b != "" && a != b {
			fmt.Fprintf(os.Stderr, "gen-layouts: note: go1.%d amd64 and arm64 layouts differ\n", minor)
		}
	}
	doc := map[string]any{
		"comment": "Generated by `cargo xtask gen-layouts` (xtask/gen-layouts). Do not edit by hand.",
		"layouts": out,
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gen-layouts: "+format+"\n", args...)
	os.Exit(1)
}

func extract(minor int, full, arch, binary, goroot string) (layout, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return layout{}, err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return layout{}, fmt.Errorf("DWARF: %w", err)
	}
	want := map[string]bool{"runtime.g": true, "runtime.gobuf": true, "runtime.m": true, "runtime._defer": true, "runtime.stack": true,
		"runtime.mheap": true, "runtime.mspan": true, "runtime.special": true, "runtime.sudog": true,
		"runtime.moduledata": true, "runtime.p": true, "runtime.wbBuf": true, "runtime.gcWork": true, "runtime.pageCache": true, "runtime.xRegPerP": true,
		"runtime.semaRoot": true}
	var semtableSize int64
	structs := map[string]structInfo{}
	consts := map[string]int64{}
	statuses := map[string]int64{}
	specialKinds := map[string]int64{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return layout{}, err
		}
		if e == nil {
			break
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		switch e.Tag {
		case dwarf.TagConstant:
			v, ok := e.Val(dwarf.AttrConstValue).(int64)
			if !ok {
				break
			}
			short := strings.TrimPrefix(name, "runtime.")
			if strings.HasPrefix(name, "runtime._KindSpecial") {
				specialKinds[short] = v
			}
			if strings.HasPrefix(name, "runtime.waitReason") {
				consts[short] = v
			} else if isStatusConst(short) {
				statuses[short] = v
			}
		case dwarf.TagArrayType:
			if name == "runtime.semTable" {
				semtableSize, _ = e.Val(dwarf.AttrByteSize).(int64)
			}
			if e.Children {
				r.SkipChildren()
			}
		case dwarf.TagStructType:
			if !want[name] || structs[name].members != nil {
				if e.Children {
					r.SkipChildren()
				}
				continue
			}
			si := structInfo{members: map[string]int64{}}
			si.size, _ = e.Val(dwarf.AttrByteSize).(int64)
			for {
				c, err := r.Next()
				if err != nil {
					return layout{}, err
				}
				if c == nil || c.Tag == 0 {
					break
				}
				if c.Tag == dwarf.TagMember {
					mn, _ := c.Val(dwarf.AttrName).(string)
					if off, ok := c.Val(dwarf.AttrDataMemberLoc).(int64); ok {
						si.members[mn] = off
					}
				}
				if c.Children {
					r.SkipChildren()
				}
			}
			structs[name] = si
		}
	}
	// Structs only some versions have (absent: their fields are nil).
	optional := map[string]bool{"runtime.xRegPerP": true}
	for n := range want {
		if structs[n].members == nil && !optional[n] {
			return layout{}, fmt.Errorf("struct %s not in DWARF", n)
		}
	}
	var missing []string
	req := func(s, m string) uint64 {
		v, ok := structs[s].members[m]
		if !ok {
			missing = append(missing, s+"."+m)
		}
		return uint64(v)
	}
	opt := func(s, m string) *uint64 {
		v, ok := structs[s].members[m]
		if !ok {
			return nil
		}
		u := uint64(v)
		return &u
	}
	g, stack := "runtime.g", req("runtime.g", "stack")
	l := layout{
		Go: full, Minor: minor, Arch: arch,
		GSize:         uint64(structs[g].size),
		GStackLo:      stack + req("runtime.stack", "lo"),
		GStackHi:      stack + req("runtime.stack", "hi"),
		GDefer:        req(g, "_defer"),
		GPanic:        req(g, "_panic"),
		GM:            req(g, "m"),
		GSched:        req(g, "sched"),
		GobufSP:       req("runtime.gobuf", "sp"),
		GobufPC:       req("runtime.gobuf", "pc"),
		GobufLR:       req("runtime.gobuf", "lr"),
		GobufBP:       req("runtime.gobuf", "bp"),
		GAtomicstatus: req(g, "atomicstatus"),
		GGoid:         req(g, "goid"),
		GWaitsince:    req(g, "waitsince"),
		GWaitreason:   req(g, "waitreason"),
		GParentGoid:   opt(g, "parentGoid"),
		GGopc:         req(g, "gopc"),
		GStartpc:      req(g, "startpc"),
		GTrackingSeq:  opt(g, "trackingSeq"),
		MCurg:         req("runtime.m", "curg"),
		DeferSize:     uint64(structs["runtime._defer"].size),
		DeferSP:       req("runtime._defer", "sp"),
		DeferPC:       req("runtime._defer", "pc"),
		DeferFn:       req("runtime._defer", "fn"),
		DeferLink:     req("runtime._defer", "link"),
		DeferHeap:     req("runtime._defer", "heap"),
		DeferOpen:     opt("runtime._defer", "openDefer"),
		DeferRange:    opt("runtime._defer", "rangefunc"),
		DeferHead:     opt("runtime._defer", "head"),
	}
	ms, sg, md := "runtime.mspan", "runtime.sudog", "runtime.moduledata"
	l.Reach = reach{
		GWaiting:              req(g, "waiting"),
		MheapAllspans:         req("runtime.mheap", "allspans"),
		MspanSize:             uint64(structs[ms].size),
		MspanStart:            req(ms, "startAddr"),
		MspanNpages:           req(ms, "npages"),
		MspanElemsize:         req(ms, "elemsize"),
		MspanState:            req(ms, "state"),
		MspanSpanclass:        req(ms, "spanclass"),
		MspanSpecials:         req(ms, "specials"),
		MspanFreeindex:        req(ms, "freeindex"),
		MspanNelems:           req(ms, "nelems"),
		MspanAllocBits:        req(ms, "allocBits"),
		SpecialNext:           req("runtime.special", "next"),
		SpecialOffset:         req("runtime.special", "offset"),
		SpecialKind:           req("runtime.special", "kind"),
		SpecialKindFinalizer:  optConst(specialKinds, "_KindSpecialFinalizer"),
		SpecialKindWeakHandle: optConst(specialKinds, "_KindSpecialWeakHandle"),
		SpecialKindCleanup:    optConst(specialKinds, "_KindSpecialCleanup"),
		SudogSize:             uint64(structs[sg].size),
		SudogC:                req(sg, "c"),
		SudogElem:             req(sg, "elem"),
		SudogWaitlink:         req(sg, "waitlink"),
		SudogG:                req(sg, "g"),
		SudogPrev:             req(sg, "prev"),
		SudogNext:             req(sg, "next"),
		SemarootTreap:         req("runtime.semaRoot", "treap"),
		SemtableSize:          uint64(semtableSize),

		ModuledataData:       req(md, "data"),
		ModuledataEdata:      req(md, "edata"),
		ModuledataBss:        req(md, "bss"),
		ModuledataEbss:       req(md, "ebss"),
		ModuledataGcdatamask: req(md, "gcdatamask"),
		ModuledataGcbssmask:  req(md, "gcbssmask"),

		PWbbuf:     req("runtime.p", "wbBuf"),
		WbbufSize:  uint64(structs["runtime.wbBuf"].size),
		PGcw:       req("runtime.p", "gcw"),
		GcworkSize: uint64(structs["runtime.gcWork"].size),

		MG0:      req("runtime.m", "g0"),
		MGsignal: req("runtime.m", "gsignal"),
		MAlllink: req("runtime.m", "alllink"),

		PPcache:       req("runtime.p", "pcache"),
		PagecacheSize: uint64(structs["runtime.pageCache"].size),

		PXregs:       opt("runtime.p", "xRegs"),
		XregperpSize: uint64(structs["runtime.xRegPerP"].size),
	}
	if semtableSize <= 0 {
		missing = append(missing, "runtime.semTable")
	}
	if len(missing) > 0 {
		return layout{}, fmt.Errorf("DWARF lacks %v", missing)
	}
	for _, want := range []string{"_Gidle", "_Grunnable", "_Grunning", "_Gsyscall", "_Gwaiting", "_Gdead", "_Gscan"} {
		if _, ok := statuses[want]; !ok {
			return layout{}, fmt.Errorf("DWARF lacks the status constant runtime.%s", want)
		}
	}
	l.GStatuses = statuses
	strs, order, err := waitReasonStrings(filepath.Join(goroot, "src", "runtime", "runtime2.go"))
	if err != nil {
		return layout{}, err
	}
	// Cross-check the DWARF values against the const block's iota order.
	for i, name := range order {
		if v, ok := consts[name]; ok && v != int64(i) {
			return layout{}, fmt.Errorf("%s: DWARF says %d, runtime2.go iota order says %d", name, v, i)
		}
	}
	for i, name := range order {
		s, ok := strs[name]
		if !ok {
			continue // sentinel constants without a string (none today)
		}
		if i > 255 {
			return layout{}, fmt.Errorf("waitReason %s = %d does not fit uint8", name, i)
		}
		l.WaitReasons = append(l.WaitReasons, waitReason{Value: uint8(i), Name: name, String: s})
	}
	if len(l.WaitReasons) == 0 {
		return layout{}, fmt.Errorf("no waitReasonStrings in %s", goroot)
	}
	return l, nil
}

// optConst is the constant's value, or nil when the binary's DWARF lacks it.
func optConst(consts map[string]int64, name string) *int64 {
	v, ok := consts[name]
	if !ok {
		return nil
	}
	return &v
}

// isStatusConst is the rule goruntime::layout::StatusCodes applies: `_G`
// followed by lower case (_Grunning, _Gscanwaiting), not _GCoff nor
// _GoidCacheBatch.
func isStatusConst(name string) bool {
	rest, ok := strings.CutPrefix(name, "_G")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

// waitReasonStrings parses runtime2.go: the `waitReason` const block (iota
// order) and the keyed `waitReasonStrings` array literal.
func waitReasonStrings(path string) (map[string]string, []string, error) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return nil, nil, err
	}
	strs := map[string]string{}
	var order []string
	for _, decl := range file.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok {
			continue
		}
		switch gd.Tok {
		case token.CONST:
			// The block whose first spec is `waitReasonZero waitReason = iota`.
			if len(gd.Specs) == 0 {
				continue
			}
			first, ok := gd.Specs[0].(*ast.ValueSpec)
			if !ok || len(first.Names) != 1 || first.Names[0].Name != "waitReasonZero" {
				continue
			}
			for _, sp := range gd.Specs {
				vs := sp.(*ast.ValueSpec)
				if len(vs.Names) != 1 || (len(vs.Values) > 0 && sp != gd.Specs[0]) {
					return nil, nil, fmt.Errorf("waitReason const block is not a plain iota list at %s", fset.Position(vs.Pos()))
				}
				order = append(order, vs.Names[0].Name)
			}
		case token.VAR:
			for _, sp := range gd.Specs {
				vs := sp.(*ast.ValueSpec)
				if len(vs.Names) != 1 || vs.Names[0].Name != "waitReasonStrings" || len(vs.Values) != 1 {
					continue
				}
				lit, ok := vs.Values[0].(*ast.CompositeLit)
				if !ok {
					return nil, nil, fmt.Errorf("waitReasonStrings is not a composite literal")
				}
				for _, elt := range lit.Elts {
					kv, ok := elt.(*ast.KeyValueExpr)
					if !ok {
						return nil, nil, fmt.Errorf("unkeyed waitReasonStrings element at %s", fset.Position(elt.Pos()))
					}
					key, ok1 := kv.Key.(*ast.Ident)
					val, ok2 := kv.Value.(*ast.BasicLit)
					if !ok1 || !ok2 {
						return nil, nil, fmt.Errorf("unexpected waitReasonStrings element at %s", fset.Position(elt.Pos()))
					}
					s, err := strconv.Unquote(val.Value)
					if err != nil {
						return nil, nil, err
					}
					strs[key.Name] = s
				}
			}
		}
	}
	if len(order) == 0 || len(strs) == 0 {
		return nil, nil, fmt.Errorf("%s: waitReason constants or waitReasonStrings not found", path)
	}
	return strs, order, nil
}
