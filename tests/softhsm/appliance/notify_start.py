#!/usr/bin/python3
"""Start a daemon the way systemd's Type=notify does, and return once it is ready.

    notify_start.py --timeout 60 --pidfile F --statusfile F --log F -- COMMAND...

A supervisor process binds a NOTIFY_SOCKET (AF_UNIX datagram) before starting COMMAND in
its own session, so the daemon's sd_notify("READY=1") is the synchronisation point (no
polling, no sleeps). This command exits 0 once READY=1 arrived, 1 if the daemon exits first
or the timeout passes (the messages received are printed). The supervisor stays behind as
the daemon's parent: it reaps it and writes its exit status (a number, or -N for signal N)
to --statusfile, then exits. --pidfile gets two lines: the daemon's pid and the
supervisor's. The daemon's stdout and stderr go to --log.
"""
import argparse
import os
import signal
import select
import socket
import subprocess
import sys
import tempfile
import time


def supervise(args, cmd, report):
    sockdir = tempfile.mkdtemp(prefix="p11ca-notify.")
    path = os.path.join(sockdir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    with open(args.log, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True)
    seen = []
    verdict = None
    deadline = time.monotonic() + args.timeout
    while verdict is None:
        left = deadline - time.monotonic()
        if left <= 0:
            verdict = f"F not ready after {args.timeout:.0f}s; got {seen}"
            break
        ready, _, _ = select.select([sock], [], [], min(left, 0.2))
        if ready:
            msg = sock.recv(4096).decode(errors="replace")
            seen.append(msg)
            if "READY=1" in msg.split("\n"):
                verdict = f"R {proc.pid}"
        elif proc.poll() is not None:
            verdict = f"F {cmd[0]} exited with {proc.returncode} before READY=1; got {seen}"
    sock.close()
    os.unlink(path)
    os.rmdir(sockdir)
    if verdict.startswith("F") and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # never leave a half-started daemon behind
    os.write(report, (verdict + "\n").encode())
    os.close(report)
    rc = proc.wait()
    tmp = args.statusfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{rc}\n")
    os.rename(tmp, args.statusfile)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--statusfile", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command

    r, w = os.pipe()
    supervisor = os.fork()
    if supervisor == 0:
        os.close(r)
        try:
            supervise(args, cmd, w)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        verdict = f.readline().strip()
    if not verdict.startswith("R "):
        print(f"notify_start: {verdict[2:] or 'the supervisor died'}", file=sys.stderr)
        return 1
    with open(args.pidfile, "w") as f:
        f.write(f"{verdict[2:]}\n{supervisor}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
