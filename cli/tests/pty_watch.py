"""Drives `onecli approvals watch` through a pseudo-terminal: waits for the
prompt, answers it, and prints what the terminal showed.
Usage: python3 pty_watch.py ANSWER ONECLI [ARGS...]"""
import os, pty, select, subprocess, sys, time

answer, argv = sys.argv[1], sys.argv[2:]
master, slave = pty.openpty()
proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
os.close(slave)
seen = b""
deadline = time.monotonic() + 30
answered = False
while time.monotonic() < deadline:
    ready, _, _ = select.select([master], [], [], 0.2)
    if ready:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    if not answered and b"approve?" in seen:
        os.write(master, (answer + "\n").encode())
        answered = True
    if answered and (b"approved" in seen.split(b"approve?")[-1] or b"denied" in seen.split(b"approve?")[-1]):
        break
proc.kill()
proc.wait()
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(0 if answered else 1)
