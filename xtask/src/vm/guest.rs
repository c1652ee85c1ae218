//! What runs inside the VM: `/init`, a busybox shell script that mounts the
//! kernel file systems and runs each scenario (one integration-test function
//! of `tests/tests/`, cross-built, against one prebuilt Go toolchain's
//! programs), then powers off.
//!
//! Everything the host needs comes back on the serial console as lines
//! holding [`MARKER`]; the rest of the console (the tests' own output) is
//! kept for the report of a failing scenario.

/// Starts every line the host parses (anywhere in the line: kernel messages
/// may share the console).
pub const MARKER: &str = "@@deferscope-vm@@";

/// Where things are inside the guest.
pub const TESTS_DIR: &str = "tests";
pub const GO_DIR: &str = "go";
pub const WORKSPACE_DIR: &str = "ws";
pub const DEFERSCOPE: &str = "bin/deferscope";
pub const SCENARIOS: &str = "scenarios";

/// How long one scenario may run inside the guest before it is killed and
/// failed (the tests' own steps time out after 60 s each).
pub const SCENARIO_TIMEOUT_S: u32 = 600;

/// One line of `/scenarios`: `name|test binary|test function|toolchain|deferscope args`.
pub fn scenario_line(name: &str, binary: &str, test: &str, toolchain_full: &str, tracer_args: &str) -> String {
    format!("{name}|{binary}|{test}|{toolchain_full}|{tracer_args}\n")
}

/// The guest's `/init`.
pub fn init_script() -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
M='{MARKER}'
echo "$M guest $(uname -r) $(uname -m) cpus=$(nproc) mem=$(awk '/MemTotal/ {{print $2 " kB"}}' /proc/meminfo)"
export DEFERSCOPE_BIN=/{DEFERSCOPE} DEFERSCOPE_WORKSPACE=/{WORKSPACE_DIR} DEFERSCOPE_GO_PREBUILT=/{GO_DIR}
while IFS='|' read -r name binary test toolchain tracer_args; do
    echo "$M begin $name"
    start=$(date +%s)
    # Only the toolchain's name is used: the programs are prebuilt.
    (DEFERSCOPE_GO_TOOLCHAINS="$toolchain=/nonexistent/go" DEFERSCOPE_TEST_ARGS="$tracer_args" timeout {SCENARIO_TIMEOUT_S} \
        /{TESTS_DIR}/"$binary" --exact "$test" --include-ignored --test-threads=1 --nocapture; echo $? > /tmp/rc) 2>&1 | tee /tmp/out
    rc=$(cat /tmp/rc)
    # The tests are #[ignore = "needs root …"] on a plain run; here they
    # run, and a filter that matched nothing is a failure, not a pass.
    if [ "$rc" = 0 ] && grep -q 'test result: ok. 1 passed' /tmp/out; then
        verdict=PASS
    else
        verdict=FAIL
    fi
    echo "$M result $name $verdict $(( $(date +%s) - start ))s exit=$rc"
done < /{SCENARIOS}
echo "$M done"
poweroff -f
"#
    )
}
