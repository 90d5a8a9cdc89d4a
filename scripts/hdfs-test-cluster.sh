#!/usr/bin/env bash
# A throwaway single-node HDFS (Hadoop 2.7.3: one NameNode, one DataNode) on
# 127.0.0.1, for tests that need a real HDFS. No Docker, no Maven, no Hadoop
# install: the Hadoop jars come from the pyspark 2.4.8 source release on PyPI
# and are cached once.
#
# Usage: scripts/hdfs-test-cluster.sh COMMAND [DIR]
#
#   start             Set up and start a cluster in DIR, wait until it accepts
#                     writes, print its URL (hdfs://127.0.0.1:PORT) as the last
#                     line of stdout. Everything else goes to stderr.
#                     If the cluster of DIR is already running, it is reused and
#                     its URL printed again. If DIR holds a stopped cluster, its
#                     old data is discarded and a fresh one is formatted.
#   stop              Stop the cluster of DIR and wait for both processes to
#                     exit. DIR (logs, data) is kept; remove it when done.
#   status            Say whether the cluster of DIR runs, and its URL.
#                     Exit 0 if both processes run, 1 otherwise.
#   url               Print the URL of DIR's cluster (running or not).
#   stop-namenode     Stop only the NameNode (the DataNode keeps running), to
#                     test what a client does while HDFS is unreachable.
#   start-namenode    Start the NameNode again on the same port and data, and
#                     wait until the DataNode has reported its blocks to it.
#   restart-namenode  stop-namenode, then start-namenode.
#   classpath         Print the Java classpath of DIR's cluster, e.g. to run
#                     Hadoop's own shell against it:
#                       java -cp "$(scripts/hdfs-test-cluster.sh classpath DIR)" \
#                         org.apache.hadoop.fs.FsShell -fs "$URL" -ls -R /
#
# DIR defaults to ${TMPDIR:-/tmp}/weir-hdfs. It holds everything of that
# cluster: conf/, data/, logs/ (namenode.log, datanode.log, format.log) and
# run/ (pid files). Two clusters in two DIRs run side by side: every port is
# picked free at start.
#
# Environment:
#   WEIR_HDFS_CACHE    where the Hadoop jars are kept
#                      (default: ${XDG_CACHE_HOME:-$HOME/.cache}/weir/hdfs)
#   WEIR_HDFS_JAVA     java binary to use (default: $JAVA_HOME/bin/java, else
#                      java on PATH; if there is none and we are root on a
#                      Debian-like system, openjdk-17-jre-headless is installed)
#   WEIR_HDFS_TIMEOUT  seconds to wait for the cluster to be ready (default 120)
#   WEIR_HDFS_HEAP     -Xmx of each Java process (default 512m)
#
# Needs: bash, python3 (to pick free ports; with pip and venv for the one-time
# jar download), tar, and network access to PyPI the first time only (a
# 220 MB download; the cache then holds 130 MB of jars).
set -euo pipefail

readonly HADOOP_VERSION=2.7.3
readonly PYSPARK_VERSION=2.4.8
readonly NN_CLASS=org.apache.hadoop.hdfs.server.namenode.NameNode
readonly DN_CLASS=org.apache.hadoop.hdfs.server.datanode.DataNode
readonly READY_LINE='Successfully sent block report'
readonly MARKER_FILE=.weir-hdfs-cluster

PROG=$(basename "$0")
CACHE=${WEIR_HDFS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/hdfs}
JARS=$CACHE/hadoop-$HADOOP_VERSION-jars
TIMEOUT=${WEIR_HDFS_TIMEOUT:-120}
HEAP=${WEIR_HDFS_HEAP:-512m}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# Last N lines of a log, long lines (the classpath) cut short.
show_tail() { tail -n "$2" "$1" | cut -c1-300 >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
  # The comment block at the top of this file, from its Usage line on.
  awk 'NR >= 7 && /^#/ { sub(/^# ?/, ""); print; next } NR >= 7 { exit }' "$0" >&2
  exit 2
}

# --- one-time installation -------------------------------------------------

find_java() {
  local java=${WEIR_HDFS_JAVA:-}
  if [[ -z $java && -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    java=$JAVA_HOME/bin/java
  fi
  if [[ -z $java ]]; then
    java=$(command -v java || true)
  fi
  if [[ -z $java ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      log "no java found; installing openjdk-17-jre-headless with apt-get"
      apt-get update >&2 || die "apt-get update failed; install a Java runtime (8 or newer) and retry"
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        openjdk-17-jre-headless >&2 \
        || die "apt-get install openjdk-17-jre-headless failed; install a Java runtime (8 or newer) and retry"
      java=$(command -v java || true)
    fi
    [[ -n $java ]] || die "no java found: install a Java runtime (8 or newer, e.g. openjdk-17-jre-headless) or set WEIR_HDFS_JAVA"
  fi
  "$java" -version >/dev/null 2>&1 || die "'$java -version' fails; fix the Java install or set WEIR_HDFS_JAVA"
  JAVA=$java
}

need_python() {
  command -v python3 >/dev/null || die "python3 is needed (to pick free ports and to fetch the Hadoop jars from PyPI); install it and retry"
}

# Fetches the Hadoop jars once: the pyspark source release on PyPI bundles the
# Hadoop HDFS server jars with their dependencies under deps/jars.
install_jars() {
  [[ -f $JARS/.complete ]] && return 0
  need_python
  mkdir -p "$CACHE"
  if command -v flock >/dev/null; then
    exec 8>"$CACHE/.lock"
    flock 8
    [[ -f $JARS/.complete ]] && { exec 8>&-; return 0; }
  fi
  log "first run: fetching Hadoop $HADOOP_VERSION jars (pyspark $PYSPARK_VERSION sources from PyPI, ~220 MB) into $CACHE"
  local work
  work=$(mktemp -d "$CACHE/.fetch.XXXXXX")
  # Removed on any exit from here on, also on failure.
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  python3 -m venv "$work/venv" >&2 \
    || die "python3 -m venv failed; install the venv module (e.g. apt-get install python3-venv) and retry"
  "$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check wheel setuptools >&2 \
    || die "pip install wheel setuptools failed; is PyPI reachable?"
  "$work/venv/bin/python" -m pip download --quiet --disable-pip-version-check \
    --no-deps --no-build-isolation --no-binary :all: \
    -d "$work/dl" "pyspark==$PYSPARK_VERSION" >&2 \
    || die "pip download pyspark==$PYSPARK_VERSION failed; is PyPI reachable?"
  local sdist=$work/dl/pyspark-$PYSPARK_VERSION.tar.gz
  [[ -f $sdist ]] || die "pip download did not produce $sdist"
  mkdir -p "$work/x"
  tar -xzf "$sdist" -C "$work/x" --strip-components=3 "pyspark-$PYSPARK_VERSION/deps/jars" \
    || die "could not extract deps/jars from $sdist"
  [[ -f $work/x/hadoop-hdfs-$HADOOP_VERSION.jar ]] \
    || die "pyspark $PYSPARK_VERSION sources hold no hadoop-hdfs-$HADOOP_VERSION.jar"
  # Spark, Hive, Scala and the REST/columnar stacks are not needed by HDFS and
  # some clash with what Hadoop expects on the classpath.
  local j
  for j in "$work"/x/*.jar; do
    case ${j##*/} in
      spark-* | hive-* | scala-* | jersey-* | hk2-* | parquet-* | orc-*) rm -f "$j" ;;
    esac
  done
  touch "$work/x/.complete"
  rm -rf "$JARS"
  mv "$work/x" "$JARS"
  rm -rf "$work"
  trap - EXIT
  log "Hadoop jars cached in $JARS"
  if command -v flock >/dev/null; then exec 8>&-; fi
}

# --- cluster state -----------------------------------------------------------

set_dir() {
  local dir=${1:-${TMPDIR:-/tmp}/weir-hdfs}
  [[ $dir == /* ]] || dir=$PWD/$dir
  DIR=${dir%/}
  CONF=$DIR/conf
  RUN=$DIR/run
  LOGS=$DIR/logs
  # A literal * here: java expands DIR/* to the jars of DIR.
  CP="$CONF:$DIR/webroot:$JARS/*"
}

is_ours() { [[ -f $DIR/$MARKER_FILE ]]; }

url() { [[ -f $DIR/url ]] && cat "$DIR/url"; }

# pid of the given role (namenode|datanode) if that process runs, else fails.
# A pid is only trusted if the process still carries this DIR on its command
# line, so a recycled pid is never killed.
running_pid() {
  local f=$RUN/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/cmdline ]]; then
    tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "-Dweir.hdfs.dir=$DIR" || return 1
  fi
  echo "$pid"
}

# Prints N free TCP ports on 127.0.0.1, all distinct.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

prop() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }

write_conf() {
  local ports
  read -r -a ports <<<"$(free_ports 10)"
  local a=127.0.0.1
  mkdir -p "$CONF" "$RUN" "$LOGS" "$DIR/data/name" "$DIR/data/data" "$DIR/data/tmp"
  local w
  for w in hdfs datanode secondary static; do mkdir -p "$DIR/webroot/webapps/$w"; done
  local url=hdfs://$a:${ports[0]}
  {
    echo '<?xml version="1.0"?>'
    echo '<configuration>'
    prop fs.defaultFS "$url"
    prop hadoop.tmp.dir "$DIR/data/tmp"
    echo '</configuration>'
  } >"$CONF/core-site.xml"
  {
    echo '<?xml version="1.0"?>'
    echo '<configuration>'
    prop dfs.namenode.rpc-address "$a:${ports[0]}"
    prop dfs.namenode.http-address "$a:${ports[1]}"
    prop dfs.namenode.https-address "$a:${ports[2]}"
    prop dfs.namenode.secondary.http-address "$a:${ports[3]}"
    prop dfs.namenode.secondary.https-address "$a:${ports[4]}"
    prop dfs.namenode.backup.address "$a:${ports[5]}"
    prop dfs.namenode.backup.http-address "$a:${ports[6]}"
    prop dfs.datanode.address "$a:${ports[7]}"
    prop dfs.datanode.http.address "$a:${ports[8]}"
    prop dfs.datanode.ipc.address "$a:${ports[9]}"
    prop dfs.datanode.https.address "$a:0"
    prop dfs.datanode.hostname "$a"
    prop dfs.namenode.datanode.registration.ip-hostname-check false
    prop dfs.namenode.name.dir "file://$DIR/data/name"
    prop dfs.datanode.data.dir "file://$DIR/data/data"
    prop dfs.replication 1
    prop dfs.permissions.enabled false
    prop dfs.namenode.safemode.extension 0
    prop dfs.namenode.safemode.min.datanodes 0
    prop dfs.heartbeat.interval 1
    # WebHDFS needs Jersey 1, which the jar set does not have (nor need).
    prop dfs.webhdfs.enabled false
    echo '</configuration>'
  } >"$CONF/hdfs-site.xml"
  cat >"$CONF/log4j.properties" <<'EOF'
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
EOF
  echo "$url" >"$DIR/url"
}

java_opts() {
  printf '%s\n' "-Xmx$HEAP" -Djava.net.preferIPv4Stack=true \
    "-Dhadoop.home.dir=$DIR" "-Dhadoop.log.dir=$LOGS" "-Dweir.hdfs.dir=$DIR"
}

# Starts role (namenode|datanode) in the background, in its own session, with
# its pid in run/ROLE.pid and its output in logs/ROLE.log (appended).
launch() {
  local role=$1 class opts
  case $role in
    namenode) class=$NN_CLASS ;;
    datanode) class=$DN_CLASS ;;
  esac
  mapfile -t opts < <(java_opts)
  # The child writes its own pid, then becomes java, so the pid file holds
  # the java pid whether or not setsid had to fork.
  # shellcheck disable=SC2016
  local starter=(bash -c 'echo $$ >"$0"; exec "$@"')
  if command -v setsid >/dev/null; then starter=(setsid "${starter[@]}"); fi
  printf '\n===== %s start %s =====\n' "$role" "$(date -u +%FT%TZ)" >>"$LOGS/$role.log"
  nohup "${starter[@]}" "$RUN/$role.pid" "$JAVA" "${opts[@]}" -cp "$CP" "$class" \
    </dev/null >>"$LOGS/$role.log" 2>&1 &
  for _ in $(seq 50); do
    [[ -s $RUN/$role.pid ]] && return 0
    sleep 0.1
  done
  die "$role did not start; see $LOGS/$role.log"
}

format_namenode() {
  local opts
  mapfile -t opts < <(java_opts)
  "$JAVA" "${opts[@]}" -cp "$CP" "$NN_CLASS" -format -force -nonInteractive \
    >"$LOGS/format.log" 2>&1 \
    || { show_tail "$LOGS/format.log" 30; die "formatting the NameNode failed; see $LOGS/format.log"; }
}

count_ready() { grep -cF "$READY_LINE" "$LOGS/datanode.log" 2>/dev/null || true; }

# Waits until the DataNode log shows more block reports than $1.
# Returns 0 when ready, 2 when a process died of a port clash, 1 on any other
# failure (after showing the log tails).
wait_ready() {
  local before=$1 start=$SECONDS role
  while ((SECONDS - start < TIMEOUT)); do
    if (($(count_ready) > before)); then return 0; fi
    for role in namenode datanode; do
      if ! running_pid "$role" >/dev/null; then
        if tail -n 200 "$LOGS/$role.log" | grep -q 'BindException\|Address already in use'; then
          return 2
        fi
        log "the $role exited during startup; last lines of $LOGS/$role.log:"
        show_tail "$LOGS/$role.log" 40
        return 1
      fi
    done
    sleep 0.5
  done
  for role in namenode datanode; do
    log "last lines of $LOGS/$role.log:"
    show_tail "$LOGS/$role.log" 25
  done
  log "not ready after ${TIMEOUT}s: no new '$READY_LINE' in $LOGS/datanode.log (raise WEIR_HDFS_TIMEOUT if the machine is just slow)"
  return 1
}

stop_role() {
  local role=$1 pid
  if pid=$(running_pid "$role"); then
    log "stopping $role (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$role (pid $pid) ignored SIGTERM for 20s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -0 "$pid" 2>/dev/null && die "could not stop $role (pid $pid)"
    fi
  fi
  rm -f "$RUN/$role.pid"
}

# --- commands ------------------------------------------------------------------

cmd_start() {
  if is_ours; then
    local nn=0 dn=0
    running_pid namenode >/dev/null && nn=1
    running_pid datanode >/dev/null && dn=1
    if ((nn && dn)); then
      log "cluster in $DIR already runs; reusing it"
      url
      return 0
    fi
    if ((nn || dn)); then
      die "the cluster in $DIR is half up (namenode running: $nn, datanode running: $dn); run '$PROG stop $DIR' or '$PROG start-namenode $DIR'"
    fi
    log "discarding the stopped cluster in $DIR"
    rm -rf "${DIR:?}/conf" "${DIR:?}/data" "${DIR:?}/logs" "${DIR:?}"/logs.attempt* \
      "${DIR:?}/run" "${DIR:?}/webroot" "${DIR:?}/url"
  elif [[ -e $DIR ]] && [[ -n $(ls -A "$DIR" 2>/dev/null) ]]; then
    die "$DIR exists, is not empty and holds no cluster of this script; pick another DIR or empty it"
  fi
  find_java
  install_jars
  need_python
  mkdir -p "$DIR"
  touch "$DIR/$MARKER_FILE"
  local attempt rc
  for attempt in 1 2 3; do
    write_conf
    log "formatting a new HDFS in $DIR"
    format_namenode
    local t0=$SECONDS
    launch namenode
    launch datanode
    log "waiting for $(url) (NameNode pid $(<"$RUN/namenode.pid"), DataNode pid $(<"$RUN/datanode.pid"); logs in $LOGS)"
    rc=0
    wait_ready 0 || rc=$?
    if ((rc == 0)); then
      log "HDFS ready after $((SECONDS - t0))s; stop it with '$PROG stop $DIR'"
      url
      return 0
    fi
    if ((rc != 2)); then
      stop_role datanode
      stop_role namenode
      die "could not start HDFS in $DIR; its logs are in $LOGS"
    fi
    log "a port was taken meanwhile (attempt $attempt); retrying on other ports"
    stop_role datanode
    stop_role namenode
    rm -rf "${DIR:?}/data" "${DIR:?}/run"
    mkdir -p "$LOGS"
    mv "$LOGS" "$DIR/logs.attempt$attempt"
  done
  die "could not find free ports in 3 attempts; see $DIR/logs.attempt*"
}

cmd_stop() {
  if ! is_ours; then
    log "no cluster in $DIR; nothing to stop"
    return 0
  fi
  stop_role datanode
  stop_role namenode
  log "cluster in $DIR stopped"
}

cmd_status() {
  if ! is_ours || [[ ! -f $DIR/url ]]; then
    echo "no cluster in $DIR"
    return 1
  fi
  local nn dn
  nn=$(running_pid namenode || echo stopped)
  dn=$(running_pid datanode || echo stopped)
  if [[ $nn != stopped && $dn != stopped ]]; then
    echo "running: $(url) (NameNode pid $nn, DataNode pid $dn, dir $DIR)"
    return 0
  fi
  echo "not running: $(url) (NameNode: $nn, DataNode: $dn, dir $DIR)"
  return 1
}

cmd_url() {
  if ! is_ours || [[ ! -f $DIR/url ]]; then die "no cluster in $DIR"; fi
  url
}

cmd_stop_namenode() {
  is_ours || die "no cluster in $DIR"
  stop_role namenode
}

cmd_start_namenode() {
  if ! is_ours || [[ ! -f $DIR/url ]]; then
    die "no cluster in $DIR; run '$PROG start $DIR' first"
  fi
  running_pid datanode >/dev/null || die "the DataNode of $DIR does not run; use '$PROG start $DIR' for a fresh cluster"
  if running_pid namenode >/dev/null; then
    log "NameNode of $DIR already runs"
    url
    return 0
  fi
  find_java
  [[ -f $JARS/.complete ]] || die "Hadoop jars missing from $JARS; run '$PROG start' once to fetch them"
  local before t0=$SECONDS
  before=$(count_ready)
  launch namenode
  log "waiting for the DataNode to report to the new NameNode (pid $(<"$RUN/namenode.pid"))"
  local rc=0
  wait_ready "$before" || rc=$?
  if ((rc != 0)); then
    stop_role namenode
    ((rc == 2)) && die "the NameNode could not bind its old port $(url); see $LOGS/namenode.log"
    die "the NameNode did not come back; see $LOGS/namenode.log"
  fi
  log "NameNode back after $((SECONDS - t0))s"
  url
}

main() {
  [[ $# -ge 1 && $# -le 2 ]] || usage
  local cmd=$1
  set_dir "${2:-}"
  case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) cmd_url ;;
    stop-namenode) cmd_stop_namenode ;;
    start-namenode) cmd_start_namenode ;;
    restart-namenode) cmd_stop_namenode && cmd_start_namenode ;;
    classpath) echo "$CP" ;;
    -h | --help | help) usage ;;
    *) log "unknown command '$cmd'"; usage ;;
  esac
}

main "$@"
