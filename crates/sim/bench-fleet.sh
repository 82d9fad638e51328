#!/usr/bin/env bash
# Load figures for the agent gateway and the agent, on this machine.
#
#   crates/sim/bench-fleet.sh [N]      (N virtual devices, default 1000)
#
# 1. Fleet: `bulwark up --no-agent` on a fresh data directory, owner created
#    and logged in through the API, N+1 enrolment tokens issued. Server RSS
#    (VmRSS) idle with no agent, after `bulwark-sim` enrolled N devices, and
#    with the N connected (real protocol; the online count checked through
#    the API): per device (RSS_N - RSS_0) / N, per connection
#    (RSS_N - RSS_enrolled) / N. Server CPU while the N sessions idle, a
#    job fan-out to all N (signed jobs of FANOUT_CHUNK devices), a
#    reconnect storm, and RSS once they have gone again.
# 2. Agent: the real `bulwark-agent` (AGENT_BIN), enrolled against the same
#    server: binary size, RSS after AGENT_IDLE_SECS connected, CPU time
#    over the following AGENT_CPU_SECS (utime+stime, and the scheduler's
#    nanosecond count, since an idle agent uses less than one clock tick),
#    then its RSS after AGENT_RECONNECTS kill -9 restarts of its server.
# 3. Start-up: `bulwark up` (with its local agent) until the local device is
#    online through the API, polled every 50 ms: a first start on a fresh
#    data directory (the owner is created meanwhile), then a restart.
#
# Environment: RAMP (starts per second, default 500), SETTLE_SECS (wait
# after the fleet connected before measuring, default 5), HEARTBEAT (seconds,
# default 30, the server default), HOLD_SECS (idle CPU window, default 60),
# AGENT_IDLE_SECS (60), AGENT_CPU_SECS (300), SKIP_AGENT=1 to skip part 2,
# SKIP_STARTUP=1 to skip part 3, SKIP_STORM=1 to skip the reconnect storm
# (kill -9 of the fleet's server and a restart on the same ports), NO_BUILD=1 to use the release binaries as
# they are, KEEP=1 to keep the work directory, AGENT_BIN the agent binary to
# measure (default: the release build's).
# SKIP_FANOUT=1 skips the job fan-out, FANOUT_CHUNK (2000) devices per job,
# POLICY_SETTLE_SECS (10) after the policy that allows it, AGENT_RECONNECTS (5) sets how often the
# real agent sees its server killed and restarted before its last RSS figure.
# Needs curl, jq, python3 (TOTP codes) and sqlite3 (the fan-out's rows).
set -euo pipefail

N=${1:-${N:-1000}}
RAMP=${RAMP:-500}
HEARTBEAT=${HEARTBEAT:-30}
HOLD_SECS=${HOLD_SECS:-60}
AGENT_IDLE_SECS=${AGENT_IDLE_SECS:-60}
AGENT_CPU_SECS=${AGENT_CPU_SECS:-300}
USERNAME=owner
PASSWORD=$(python3 -c 'import secrets; print("bench-" + secrets.token_urlsafe(24))')

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bulwark-bench.XXXXXX")
# `up` makes the demo tenant's trust root (enrolment tokens name it) with
# keys in the operator's key store: a throwaway one here.
export BULWARK_CONFIG_DIR=$WORK/operator
BULWARK_KEY_PASSPHRASE=$(python3 -c 'import secrets; print("bench-key-" + secrets.token_urlsafe(24))')
export BULWARK_KEY_PASSPHRASE
CLK_TCK=$(getconf CLK_TCK)
PIDS=()

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ ${KEEP:-0} == 1 ]]; then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

for tool in curl jq python3 sqlite3; do command -v "$tool" >/dev/null || die "$tool is needed"; done

# One socket per device in the server and in the simulator, plus spares.
need=$((N + 256))
if (($(ulimit -n) < need)); then
    ulimit -n "$need" 2>/dev/null || die "open-file limit $(ulimit -n) (hard $(ulimit -Hn)) is below $need for $N devices"
fi
say "open-file limit: $(ulimit -n)"

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

now_ms() { date +%s%3N; }
# The 1-minute load average: CPU and time figures on a shared machine are noisy.
load_avg() { cut -d' ' -f1 /proc/loadavg; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# utime + stime in clock ticks (fields 14 and 15; the command name may hold spaces).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
ticks_ms() { echo $(($1 * 1000 / CLK_TCK)); }
# Time on CPU in nanoseconds (the scheduler's own count: finer than clock ticks).
cpu_ns() { awk '{print $1}' "/proc/$1/schedstat"; }

# The 6-digit SHA-1 TOTP code of a base32 secret at a unix time.
totp() {
    python3 - "$1" "$2" <<'PY'
import base64, hashlib, hmac, struct, sys
secret, t = sys.argv[1].strip().upper(), int(sys.argv[2])
key = base64.b32decode(secret + "=" * (-len(secret) % 8))
mac = hmac.new(key, struct.pack(">Q", t // 30), hashlib.sha1).digest()
o = mac[-1] & 15
print("%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000))
PY
}

# api METHOD PATH [JSON]: the reply body; fails on a non-2xx status.
api() {
    local args=(-sS --fail-with-body -X "$1" -H 'content-type: application/json')
    [[ -n ${TOKEN:-} ]] && args+=(-H "authorization: Bearer $TOKEN")
    [[ -n ${3:-} ]] && args+=(--data "$3")
    curl "${args[@]}" "${CONSOLE}${2#/}"
}

# start_up DIR [ARGS...]: starts `bulwark up` on ports 0; sets SERVER_PID.
start_up() {
    local dir=$1
    shift
    rm -f "$dir/server.json"
    "$BIN/bulwark" up --data-dir "$dir" --listen "127.0.0.1:${LISTEN_PORT:-0}" \
        --gateway-listen "127.0.0.1:${GATEWAY_PORT:-0}" \
        --heartbeat-secs "$HEARTBEAT" "$@" >>"$dir.stdout" 2>>"$dir.stderr" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

# wait_up DIR: waits for server.json (50 ms polls); sets CONSOLE and GATEWAY.
wait_up() {
    local dir=$1 i
    for ((i = 0; i < 600; i++)); do
        if [[ -s $dir/server.json ]] && jq -e .gateway_url "$dir/server.json" >/dev/null 2>&1; then
            CONSOLE=$(jq -r .console_url "$dir/server.json" | sed 's#//localhost:#//127.0.0.1:#')
            GATEWAY=$(jq -r .gateway_url "$dir/server.json")
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "bulwark up exited: $(tail -5 "$dir.stderr")"
        sleep 0.05
    done
    die "no $dir/server.json after 30 s"
}

setup_code() {
    local dir=$1 i code
    for ((i = 0; i < 200; i++)); do
        code=$(sed -n 's/^Setup code: \([^ ]*\).*/\1/p' "$dir.stdout" | tail -1)
        [[ -n $code ]] && { echo "$code"; return 0; }
        sleep 0.05
    done
    die "no setup code on the output of bulwark up"
}

# create_owner_and_login DIR: the first owner (password + TOTP); sets TOKEN.
create_owner_and_login() {
    local code reply secret enrolment now
    code=$(setup_code "$1")
    TOKEN=
    reply=$(api POST /api/v1/setup "$(jq -nc --arg c "$code" --arg u "$USERNAME" --arg p "$PASSWORD" \
        '{code: $c, username: $u, password: $p}')")
    secret=$(jq -r .totp_secret <<<"$reply")
    TOTP_SECRET=$secret
    enrolment=$(jq -c .enrolment_id <<<"$reply")
    now=$(date +%s)
    LOGIN_T=$now
    api POST /api/v1/setup/confirm "{\"enrolment_id\": $enrolment, \"otp\": \"$(totp "$secret" "$now")\"}" >/dev/null
    # Each step is accepted once per account; the server also takes the next one.
    reply=$(api POST /api/v1/auth/login "$(jq -nc --arg u "$USERNAME" --arg p "$PASSWORD" \
        --arg o "$(totp "$secret" $((now + 30)))" '{username: $u, password: $p, otp: $o}')")
    TOKEN=$(jq -r .token <<<"$reply")
    [[ -n $TOKEN && $TOKEN != null ]] || die "login failed: $reply"
}

# issue_tokens COUNT FILE: one-time enrolment tokens for tenant demo, one per line.
issue_tokens() {
    local count=$1 file=$2 batch urls=() i
    : >"$file"
    local url="${CONSOLE}api/v1/tenants/demo/enrollment-tokens"
    while (($(wc -l <"$file") < count)); do
        batch=$((count - $(wc -l <"$file")))
        ((batch > 200)) && batch=200
        urls=()
        for ((i = 0; i < batch; i++)); do urls+=("$url"); done
        # One curl per batch: one kept-alive connection for all of its requests.
        curl -sS --fail-with-body -X POST -H 'content-type: application/json' \
            -H "authorization: Bearer $TOKEN" --data '{}' "${urls[@]}" | jq -r .token >>"$file"
    done
}

# fresh_otp: a TOTP code of a step not used yet (setup used the step of
# LOGIN_T, login the next one; the server takes the current and next step).
fresh_otp() {
    local used=$(((LOGIN_T + 30) / 30)) cur
    cur=$(($(date +%s) / 30))
    while ((cur < used)); do
        sleep 1
        cur=$(($(date +%s) / 30))
    done
    totp "$TOTP_SECRET" $(((cur + 1) * 30))
}

online_count() { api GET /api/v1/tenants/demo/devices | jq '[.[] | select(.online)] | length'; }

wait_local_online() {
    local i
    for ((i = 0; i < 1200; i++)); do
        [[ $(online_count 2>/dev/null) == 1 ]] && return 0
        sleep 0.05
    done
    die "the local agent was not online after 60 s: $(tail -3 "$DIR/agent.log")"
}

# stop_pid PID: SIGTERM and wait.
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
if [[ ${NO_BUILD:-0} != 1 ]]; then
    say "building release binaries"
    (cd "$ROOT" && cargo build --release --bins && cargo build --release -p bulwark-sim) >&2
fi
# Private copies: the build directory may be shared, and a rebuild during the
# run must not swap binaries under the measurement. `up` finds the agent next to itself.
mkdir -p "$WORK/bin"
cp "$BIN/bulwark" "$BIN/bulwark-sim" "$WORK/bin/"
# The agent as endpoints get it: AGENT_BIN (the `agent` profile's build, from
# `cargo xtask fleet-bench`), else the release one.
cp "${AGENT_BIN:-$BIN/bulwark-agent}" "$WORK/bin/bulwark-agent"
BIN=$WORK/bin
REVISION=${REVISION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "not a git checkout")}

# ---------------------------------------------------------------------------
# 1. Fleet
# ---------------------------------------------------------------------------
DIR=$WORK/fleet
start_up "$DIR" --no-agent
wait_up "$DIR"
FLEET_SERVER=$SERVER_PID
[[ $(jq -r .pid "$DIR/server.json") == "$FLEET_SERVER" ]] || die "server.json names another pid"
say "server pid $FLEET_SERVER, console $CONSOLE, gateway $GATEWAY"
create_owner_and_login "$DIR"
say "issuing $((N + 1)) enrolment tokens"
issue_tokens $((N + 1)) "$WORK/tokens.txt"
head -n "$N" "$WORK/tokens.txt" >"$WORK/fleet-tokens.txt"
AGENT_TOKEN=$(sed -n "$((N + 1))p" "$WORK/tokens.txt")

sleep 3
RSS_0=$(rss_kib "$FLEET_SERVER")
say "server RSS idle, no agents: $RSS_0 KiB"

say "starting bulwark-sim with $N devices (ramp $RAMP/s)"
SIM_START=$(now_ms)
"$BIN/bulwark-sim" --server "$GATEWAY" --token-file "$WORK/fleet-tokens.txt" --agents "$N" \
    --ramp-per-sec "$RAMP" --connect-after-secs 6 >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
PIDS+=("$SIM_PID")
# Between enrolment and connection: what enrolling N devices left behind.
for ((i = 0; i < 6000; i++)); do
    grep -q '^Connecting in' "$WORK/sim.log" && break
    kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim.log" >&2; die "bulwark-sim exited early"; }
    sleep 0.1
done
sleep 3
RSS_E=$(rss_kib "$FLEET_SERVER")
say "server RSS after enrolling $N devices, none connected: $RSS_E KiB"

# No API polling while the fleet connects: a devices listing of N entries
# allocates large short-lived buffers, which fragments the heap among the
# long-lived per-connection allocations and inflates the per-connection
# figure (from about 22 to 34 KiB at N=2000 with glibc's default arenas). The
# simulator reports the end of its connect phase; then the API must agree.
for ((i = 0; i < 12000; i++)); do
    grep -q '^connected [0-9]* of' "$WORK/sim.log" && break
    kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim.log" >&2; die "bulwark-sim exited early"; }
    sleep 0.05
done
online=0
for ((i = 0; i < 1200; i++)); do
    online=$(online_count)
    ((online >= N)) && break
    sleep 0.05
done
FLEET_ONLINE_MS=$(($(now_ms) - SIM_START - 6000))
((online >= N)) || die "only $online of $N online: $(grep -E '^(connected|warning)' "$WORK/sim.log")"
say "API shows $online online, $FLEET_ONLINE_MS ms after the simulator started (less its 6 s pause)"

# Let the first inventory reports land, then measure (10,000 devices'
# first reports take the server longer than 5 s; their storage is not idle).
sleep "${SETTLE_SECS:-5}"
RSS_N=$(rss_kib "$FLEET_SERVER")
SIM_RSS=$(rss_kib "$SIM_PID")
say "server RSS with $N connected: $RSS_N KiB"

CPU0=$(cpu_ticks "$FLEET_SERVER")
say "idling ${HOLD_SECS} s with $N sessions (heartbeat ${HEARTBEAT} s)"
sleep "$HOLD_SECS"
CPU1=$(cpu_ticks "$FLEET_SERVER")
LOAD_IDLE=$(load_avg)
RSS_HOLD=$(rss_kib "$FLEET_SERVER")
ONLINE_AFTER_HOLD=$(online_count)

# Job fan-out: one signed no-op job (`true`) to every device, signed with
# the `operator` key `up` made and submitted with the CLI. Virtual devices
# run no jobs: each answers with a signed-job refusal (`jobs_disabled`),
# which the server stores as the device's result. From the server's own
# rows: dispatch (the job decided: quorum met) -> delivered (sent on the
# device's session) -> acknowledged (its result stored).
FANOUT=""
LOAD_FANOUT=-
if [[ ${SKIP_FANOUT:-0} != 1 ]]; then
    # A signed job statement is at most 256 KiB (the wire's
    # MAX_PAYLOAD_BYTES): about 3,700 of these devices' targets (id,
    # host name, key) fit, well under Limits::max_targets (10,000). The
    # fleet gets FANOUT_CHUNK (2,000) devices per job, the jobs submitted
    # one after the other; each target's times count from its own job's
    # decision.
    CHUNK=${FANOUT_CHUNK:-2000}
    ((CHUNK > N)) && CHUNK=$N
    jq -n --arg s "${CONSOLE%/}" --arg t "$TOKEN" '{server: $s, token: $t}' >"$BULWARK_CONFIG_DIR/credentials.json"
    chmod 600 "$BULWARK_CONFIG_DIR/credentials.json"
    # A job to more devices than the policy's fan-out limit (25 by
    # default) needs one more signer; the bench has one person. A new
    # policy version, signed with the demo root key `up` made, raises
    # the limit; every device receives it before the jobs.
    say "job fan-out: a policy version with fan_out_limit = $CHUNK (signed with the bench's root key)"
    "$BIN/bulwark" policy show --tenant demo --toml >"$WORK/policy.toml" 2>>"$WORK/job.err" ||
        die "bulwark policy show failed: $(tail -5 "$WORK/job.err")"
    sed -i "s/^fan_out_limit = .*/fan_out_limit = $CHUNK/" "$WORK/policy.toml"
    grep -q "^fan_out_limit = $CHUNK\$" "$WORK/policy.toml" || die "no fan_out_limit in the policy's TOML"
    "$BIN/bulwark" policy sign --tenant demo --file "$WORK/policy.toml" --otp "$(fresh_otp)" \
        </dev/null >>"$WORK/job.err" 2>&1 || die "bulwark policy sign failed: $(tail -5 "$WORK/job.err")"
    sleep "${POLICY_SETTLE_SECS:-10}"
    api GET /api/v1/tenants/demo/devices | jq -r '.[].id' | split -l "$CHUNK" - "$WORK/fanout-ids."
    JOBS=0
    for ids in "$WORK"/fanout-ids.*; do
        JOBS=$((JOBS + 1))
        say "job fan-out: job $JOBS, $(wc -l <"$ids") devices"
        if ! "$BIN/bulwark" job run --tenant demo --targets "$(paste -sd, "$ids")" --command true \
            --reason "fleet bench fan-out" --yes --no-wait --json </dev/null >"$WORK/job.json" 2>>"$WORK/job.err"; then
            FANOUT="failed: $(grep '^Error' "$WORK/job.err" | tail -1)"
            say "job fan-out $FANOUT"
            break
        fi
        jq -e '.quorum == null or .quorum.have >= .quorum.need' "$WORK/job.json" >/dev/null ||
            die "the job waits for more signers: $(jq -c .quorum "$WORK/job.json")"
    done
    if [[ -z $FANOUT ]]; then
        # Until every target acknowledged, or 120 s.
        done_count=0
        fan_deadline=$(($(now_ms) + 120000))
        while (($(now_ms) < fan_deadline)); do
            done_count=$(sqlite3 -readonly "$DIR/bulwark.db" \
                'SELECT count(*) FROM job_targets WHERE reported_at IS NOT NULL' 2>/dev/null || echo 0)
            ((done_count >= N)) && break
            sleep 0.1
        done
        FANOUT=$(sqlite3 -readonly -separator ' ' "$DIR/bulwark.db" \
            "SELECT coalesce(t.delivered_at - j.decided_at, 'NULL'), coalesce(t.reported_at - j.decided_at, 'NULL') FROM job_targets t JOIN jobs j ON j.id = t.job_id" |
            python3 -c '
import sys
rows = [(l.split() + ["", ""])[:2] for l in sys.stdin if l.strip()]
n = int(sys.argv[1])
def q(xs, p):
    xs = sorted(xs)
    return xs[max(0, -(-len(xs) * p // 100) - 1)]
def line(xs):
    return "p50 %d ms, p99 %d ms, max %d ms" % (q(xs, 50), q(xs, 99), max(xs)) if xs else "none"
delivered = [int(a) for a, b in rows if a not in ("", "NULL")]
acked = [int(b) for a, b in rows if b not in ("", "NULL")]
print("%d targets in %s jobs; delivered %d (%s); acknowledged %d (%s)" % (len(rows), sys.argv[2], len(delivered), line(delivered), len(acked), line(acked)))
' "$N" "$JOBS")
        LOAD_FANOUT=$(load_avg)
        say "fan-out: $FANOUT"
    fi
fi

# restart_fleet_server: kill -9 the fleet's server and start it again on the
# same ports and data directory; sets FLEET_SERVER, KILL_MS and READY_MS.
restart_fleet_server() {
    LISTEN_PORT=$(sed 's#.*:\([0-9]*\)/$#\1#' <<<"$CONSOLE")
    GATEWAY_PORT=${GATEWAY##*:}
    KILL_MS=$(now_ms)
    kill -KILL "$FLEET_SERVER"
    wait "$FLEET_SERVER" 2>/dev/null || true
    start_up "$DIR" --no-agent
    wait_up "$DIR"
    READY_MS=$(now_ms)
    FLEET_SERVER=$SERVER_PID
    unset LISTEN_PORT GATEWAY_PORT
}

# Reconnect storm: kill -9 the server and start it again on the same
# ports; the simulator reports when every device is back (its STORM line,
# Unix milliseconds) and the session errors meanwhile.
if [[ ${SKIP_STORM:-0} != 1 ]]; then
    say "reconnect storm: kill -9 the server (pid $FLEET_SERVER) and start it again"
    restart_fleet_server
    STORM_KILL_MS=$KILL_MS
    STORM_READY_MS=$READY_MS
    for ((i = 0; i < 3000; i++)); do
        grep -q '^STORM ' "$WORK/sim.log" && break
        kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim.log" >&2; die "bulwark-sim exited during the storm"; }
        sleep 0.1
    done
    LOAD_STORM=$(load_avg)
    STORM_LINE=$(grep '^STORM ' "$WORK/sim.log" | head -1)
    [[ -n $STORM_LINE ]] || die "the fleet was not back 300 s after the restart"
    BACK_MS=$(sed 's/.*back_at_unix_ms=\([0-9]*\).*/\1/' <<<"$STORM_LINE")
    STORM_ERRORS=$(sed -n '/^STORM /,/^[^ ]/p' "$WORK/sim.log" | grep '^    ' || true)
    sleep 5
    RSS_STORM=$(rss_kib "$FLEET_SERVER")
    say "all $N back $((BACK_MS - READY_MS)) ms after the restarted server was ready ($((BACK_MS - KILL_MS)) ms after kill -9)"
fi

stop_pid "$SIM_PID"
sleep 5
RSS_AFTER=$(rss_kib "$FLEET_SERVER")
ONLINE_AFTER_STOP=$(online_count)

# ---------------------------------------------------------------------------
# 2. The real agent
# ---------------------------------------------------------------------------
AGENT_SIZE=$(stat -c %s "$BIN/bulwark-agent")
if [[ ${SKIP_AGENT:-0} != 1 ]]; then
    "$BIN/bulwark-agent" enroll --server "$GATEWAY" --state-dir "$WORK/agent" --token "$AGENT_TOKEN" >"$WORK/agent-enroll.log" 2>&1 ||
        die "agent enrolment failed: $(cat "$WORK/agent-enroll.log")"
    AGENT_DEVICE=$(jq -r .device_id "$WORK/agent/agent.json")
    "$BIN/bulwark-agent" run --state-dir "$WORK/agent" >"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
    for ((i = 0; i < 600; i++)); do
        [[ $(api GET "/api/v1/devices/$AGENT_DEVICE" | jq .online) == true ]] && break
        sleep 0.05
    done
    [[ $(api GET "/api/v1/devices/$AGENT_DEVICE" | jq .online) == true ]] || die "the real agent did not come online"
    say "real agent (pid $AGENT_PID) online; waiting ${AGENT_IDLE_SECS} s"
    sleep "$AGENT_IDLE_SECS"
    AGENT_RSS=$(rss_kib "$AGENT_PID")
    AGENT_HWM=$(hwm_kib "$AGENT_PID")
    AGENT_THREADS=$(awk '/^Threads:/ {print $2}' "/proc/$AGENT_PID/status")
    AGENT_FDS=$(find "/proc/$AGENT_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    A0=$(cpu_ticks "$AGENT_PID")
    S0=$(cpu_ns "$AGENT_PID")
    say "agent RSS after ${AGENT_IDLE_SECS} s: $AGENT_RSS KiB; measuring CPU over ${AGENT_CPU_SECS} s"
    sleep "$AGENT_CPU_SECS"
    A1=$(cpu_ticks "$AGENT_PID")
    S1=$(cpu_ns "$AGENT_PID")
    AGENT_RSS_END=$(rss_kib "$AGENT_PID")
    # Reconnects: kill -9 the server under the agent and start it again,
    # AGENT_RECONNECTS times; each time the agent must come back online.
    for ((r = 1; r <= ${AGENT_RECONNECTS:-5}; r++)); do
        restart_fleet_server
        back=0
        for ((i = 0; i < 1200; i++)); do
            if [[ $(api GET "/api/v1/devices/$AGENT_DEVICE" 2>/dev/null | jq .online) == true ]]; then
                back=1
                break
            fi
            sleep 0.05
        done
        ((back)) || die "the real agent did not come back after restart $r"
        say "agent back online after restart $r ($(($(now_ms) - READY_MS)) ms after the server was ready), RSS $(rss_kib "$AGENT_PID") KiB"
    done
    sleep 2
    AGENT_RSS_RECONNECTS=$(rss_kib "$AGENT_PID")
    AGENT_ANON=$(awk '/^RssAnon:/ {print $2}' "/proc/$AGENT_PID/status")
    AGENT_FILE=$(awk '/^RssFile:/ {print $2}' "/proc/$AGENT_PID/status")
    stop_pid "$AGENT_PID"
fi
stop_pid "$FLEET_SERVER"

# ---------------------------------------------------------------------------
# 3. Start-up to online
# ---------------------------------------------------------------------------
if [[ ${SKIP_STARTUP:-0} != 1 ]]; then
    DIR=$WORK/startup
    TOKEN=
    # Ports 0 again: on the restart `up` passes the agent its new gateway port.
    # First start: fresh data directory; the clock runs while the owner is created.
    T0=$(now_ms)
    start_up "$DIR"
    wait_up "$DIR"
    T_JSON=$(($(now_ms) - T0))
    create_owner_and_login "$DIR"
    T_LOGIN=$(($(now_ms) - T0))
    wait_local_online
    T_FIRST=$(($(now_ms) - T0))
    SEEN=$(api GET /api/v1/tenants/demo/devices | jq -r '.[0].last_seen_at')
    T_FIRST_SERVER=$(($(date -d "$SEEN" +%s%3N) - T0))
    stop_pid "$SERVER_PID"

    # Restart: owner and agent exist; the bearer token is still valid.
    T0=$(now_ms)
    start_up "$DIR"
    wait_up "$DIR"
    T_JSON2=$(($(now_ms) - T0))
    wait_local_online
    T_RESTART=$(($(now_ms) - T0))
    stop_pid "$SERVER_PID"
fi

# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------
cpu_ms=$(ticks_ms $((CPU1 - CPU0)))
echo
echo "(CPU and time figures carry the 1-minute load average when taken: the machine may be shared; memory figures do not depend on it)"
echo "=== bulwark fleet bench: N=$N, ramp $RAMP/s, heartbeat ${HEARTBEAT} s, $(nproc) cores, $(date -u +%FT%TZ), source $REVISION ==="
grep -E '^(enrolled|connected|RESULT)' "$WORK/sim.log" | sed 's/^/sim: /'
echo "server RSS idle, 0 agents:          $RSS_0 KiB"
echo "server RSS, $N enrolled, 0 connected: $RSS_E KiB"
echo "server RSS, $N agents connected:    $RSS_N KiB"
echo "per agent (RSS_N - RSS_0) / N:      $(awk -v a="$RSS_N" -v b="$RSS_0" -v n="$N" 'BEGIN {printf "%.1f", (a - b) / n}') KiB (enrolment and connection)"
echo "per connection (RSS_N - RSS_E) / N: $(awk -v a="$RSS_N" -v b="$RSS_E" -v n="$N" 'BEGIN {printf "%.1f", (a - b) / n}') KiB (connection only)"
echo "agent cap (server log):            $(grep -o 'Accepting up to [0-9]* agents[^"]*' "$WORK/fleet.stderr" | sed 's/\x1b\[[0-9;]*m//g' | head -1)"
echo "server RSS after ${HOLD_SECS} s idle:       $RSS_HOLD KiB (online: $ONLINE_AFTER_HOLD)"
echo "server CPU, ${HOLD_SECS} s idle, $N sessions: ${cpu_ms} ms ($(awk -v c="$cpu_ms" -v s="$HOLD_SECS" 'BEGIN {printf "%.2f", c / (s * 10)}')% of one core) [load $LOAD_IDLE]"
echo "job fan-out to $N (dispatch -> delivered, -> acknowledged): ${FANOUT:-skipped} [load $LOAD_FANOUT]"
if [[ ${SKIP_STORM:-0} != 1 ]]; then
    echo "reconnect storm (kill -9, restart on the same ports): all $N back $((BACK_MS - STORM_READY_MS)) ms after the new server was ready, $((BACK_MS - STORM_KILL_MS)) ms after the kill; server start took $((STORM_READY_MS - STORM_KILL_MS)) ms [load $LOAD_STORM]"
    echo "session errors during the storm:   ${STORM_ERRORS:-none}"
    echo "server RSS 5 s after the storm:     $RSS_STORM KiB ($(awk -v a="$RSS_STORM" -v n="$N" 'BEGIN {printf "%.1f", a / n}') KiB per agent, everything included)"
fi
echo "server RSS 5 s after the fleet left: $RSS_AFTER KiB (online: $ONLINE_AFTER_STOP)"
echo "API showed $N online after:         $FLEET_ONLINE_MS ms (from the simulator's start, enrolment included, its 6 s pause not)"
echo "simulator RSS with $N sessions:     $SIM_RSS KiB"
echo "bulwark-agent binary (stripped):    $AGENT_SIZE bytes ($(awk -v b="$AGENT_SIZE" 'BEGIN {printf "%.2f", b / 1048576}') MiB)"
if [[ ${SKIP_AGENT:-0} != 1 ]]; then
    echo "bulwark-agent RSS after ${AGENT_IDLE_SECS} s:      $AGENT_RSS KiB (peak $AGENT_HWM KiB, $AGENT_THREADS threads, $AGENT_FDS fds); $AGENT_RSS_END KiB at the end"
    echo "bulwark-agent RSS after ${AGENT_RECONNECTS:-5} reconnects (server kill -9 and restart): $AGENT_RSS_RECONNECTS KiB ($AGENT_ANON KiB anonymous, $AGENT_FILE KiB file-backed)"
    echo "bulwark-agent CPU over ${AGENT_CPU_SECS} s:      $(ticks_ms $((A1 - A0))) ms utime+stime (${CLK_TCK} ticks/s); $(awk -v n=$((S1 - S0)) -v s="$AGENT_CPU_SECS" 'BEGIN {printf "%.2f ms on CPU by schedstat, %.4f%% of one core", n / 1e6, n / 1e7 / s}')"
fi
if [[ ${SKIP_STARTUP:-0} != 1 ]]; then
    echo "up -> local device online (first start, fresh data dir): ${T_FIRST} ms observed via API (server.json at ${T_JSON} ms; owner created and logged in at ${T_LOGIN} ms; server recorded the agent at +${T_FIRST_SERVER} ms)"
    echo "up -> local device online (restart, enrolled agent):     ${T_RESTART} ms via API, 50 ms polls (server.json at ${T_JSON2} ms)"
fi
