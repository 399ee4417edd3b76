# Sourced by the time-boxed GPU scripts (gpu_p16_probe.sh, gpu_p16_close.sh): `deadline` from
# BUDGET_S, and `step NAME SECONDS COMMAND...`, which runs COMMAND only when that many seconds
# are left before the deadline, its output into $D/NAME.txt (the device's $OUT, so a call cut
# at its limit still brings back every step that ended), and prints the lines that carry the
# figures. Needs D set.
deadline=$(( $(date +%s) + ${BUDGET_S:-560} ))
left() { echo $(( deadline - $(date +%s) )); }
step() {
    local name=$1 need=$2
    shift 2
    if (( $(left) < need )); then
        echo "=== $name skipped: $(left) s left, needs $need" | tee -a "$D/skipped.txt"
        return
    fi
    echo "=== $name ($(left) s left)"
    timeout $(( $(left) - 5 )) "$@" > "$D/$name.txt" 2>&1
    echo "    exit $?" >> "$D/$name.txt"
    grep -E "engine:|generated|TTFT|S_TG|per step|decodes without|x of llama-bench|\] decode|\] prefill|ratio|costs|ours/" \
        "$D/$name.txt" | head -40
}
