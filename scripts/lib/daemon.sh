# scripts/lib/daemon.sh — process helpers of the scripts that run a Java service in the
# background (scripts/kafka.sh, scripts/registry.sh): sourced, not run. The caller sets HOST,
# CACHE_DIR, DATA_DIR, LOG_FILE, LOCK_NAME (the lock file's name in DATA_DIR), START_TIMEOUT,
# STOP_TIMEOUT and defines die() and log().

# Java: $JAVA_HOME/bin/java, else `java` on PATH.
if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA="java"; fi

check_java() { # WHAT: what needs it, for the message
  command -v "$JAVA" >/dev/null || die "java not found (set JAVA_HOME or put Java 17+ on PATH)"
  local v
  v="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
  [[ -n "$v" && "$v" -ge 17 ]] || die "$1 needs Java 17+, found: $("$JAVA" -version 2>&1 | head -n1)"
}

# Fills CACHE_DIR once: unless CHECK says it is complete, runs FILL under the cache's lock (a
# process that waited for the lock finds it filled). WHAT names what Maven fetches, for messages.
ensure_filled() { # CHECK FILL WHAT
  "$1" && return 0
  mkdir -p "$CACHE_DIR"
  local fd
  exec {fd}>"$CACHE_DIR/.lock"
  flock -w 900 "$fd" || die "timed out waiting for the cache lock $CACHE_DIR/.lock"
  if ! "$1"; then
    command -v mvn >/dev/null || die "mvn not found: Maven is needed once to fetch $3 into $CACHE_DIR"
    log "fetching $3 from Maven Central into $CACHE_DIR ..."
    "$2"
  fi
  exec {fd}>&-
}

# mvn -B -q ARGS, its output in MVN_LOG; on failure the log is shown, TMP removed, and WHAT named.
mvn_fetch() { # MVN_LOG TMP WHAT ARGS...
  local mvn_log="$1" tmp="$2" what="$3"
  shift 3
  if ! mvn -B -q -Dstyle.color=never "$@" >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    rm -rf "$tmp"
    die "Maven could not fetch $what (log: $mvn_log)"
  fi
}

port_open() { # PORT
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# true when PID is gone, or is a zombie whose threads have all exited. After
# SIGKILL the JVM's main thread turns zombie ("Z") while its other threads are
# still tearing down and still hold the listening sockets: not dead yet.
proc_dead() {
  [[ -d "/proc/$1" ]] || return 0
  [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" == "Z" ]] || return 1
  local tasks
  tasks="$(find "/proc/$1/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
  [[ "$tasks" -le 1 ]]
}

# The pid in PID_FILE when that process is alive and its command line holds PATTERN (a stale
# pid file whose pid was reused never points at another process), else nothing (status 1).
live_pid() { # PID_FILE PATTERN
  [[ -f "$1" ]] || return 1
  local pid cmdline
  pid="$(tr -dc '0-9' <"$1")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$2"* ]] || return 1
  ! proc_dead "$pid" || return 1
  echo "$pid"
}

wait_gone() { # PID SECONDS
  local pid="$1" deadline=$((SECONDS + $2))
  until proc_dead "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

LOCK_FD=""
with_lock() { # run the rest of the command under the per-data-dir lock
  [[ -z "$LOCK_FD" ]] || return 0   # already held (restart = stop + start)
  mkdir -p "$DATA_DIR"
  exec {LOCK_FD}>"$DATA_DIR/$LOCK_NAME"
  flock -w $((START_TIMEOUT + STOP_TIMEOUT + 60)) "$LOCK_FD" || die "timed out waiting for $DATA_DIR/$LOCK_NAME"
}

log_tail() {
  echo "----- last 60 lines of $LOG_FILE -----" >&2
  tail -n 60 "$LOG_FILE" >&2 2>/dev/null || true
  echo "-----" >&2
}

# Starts COMMAND in the background, appending to LOG_FILE; sets DETACHED to its pid (read from
# PID_FILE, which it writes itself). setsid: a session of its own, so it outlives this shell and
# its terminal; the inner shell writes its pid, closes every inherited descriptor above 2 (the
# lock, a caller's pipes), then becomes COMMAND via exec. Called with the lock held.
detach() { # PID_FILE COMMAND...
  local pid_file="$1" i
  shift
  # shellcheck disable=SC2016
  setsid bash -c 'echo $$ >"$1"; shift
    for f in /proc/$$/fd/*; do f=${f##*/}; [[ $f -gt 2 ]] && eval "exec $f>&-" 2>/dev/null; done
    exec "$@"' _ "$pid_file" "$@" \
    </dev/null >>"$LOG_FILE" 2>&1 {LOCK_FD}>&- &
  local launcher=$!
  for i in $(seq 50); do [[ -s "$pid_file" ]] && break; sleep 0.1; done
  DETACHED="$(tr -dc '0-9' <"$pid_file" 2>/dev/null || true)"
  [[ -n "$DETACHED" ]] || DETACHED="$launcher"
}

# SIGTERM, up to STOP_TIMEOUT s, then SIGKILL; `log` says which.
stop_pid() { # PID WHAT
  log "stopping $2 pid $1 (SIGTERM, up to ${STOP_TIMEOUT}s)"
  kill -TERM "$1" 2>/dev/null || true
  if ! wait_gone "$1" "$STOP_TIMEOUT"; then
    log "still alive after ${STOP_TIMEOUT}s: SIGKILL"
    kill -KILL "$1" 2>/dev/null || true
    wait_gone "$1" 10 || die "pid $1 survived SIGKILL"
  fi
}

# The script's header comment, from its second line to `set -euo`.
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
