"""How long Ctrl-C (or SIGTERM) takes to stop `pairsmith render` mid-render (issue 22, kind 2).

Starts the CLI in a session of its own, waits ``--after`` seconds (Prefect's server is up and
Blender is rendering by then), sends the signal to the whole process group as a terminal does,
and prints the seconds until the CLI exited, its exit code, whether it printed that it was
stopping, and which of its child processes were still alive a second later. A CLI still running
after ``--cap`` seconds is killed and reported as ">cap".

    python benchmarks/stop_latency.py --samples 64 --width 480 --height 320
    python benchmarks/stop_latency.py --samples 1024 --width 800 --height 600 --signal TERM
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

PAIRSMITH = str(Path(sys.executable).with_name("pairsmith"))


def measure(samples: int, width: int, height: int, sig: str, after: float, cap: float, runner: str = "inline") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [PAIRSMITH, "render", "--pairs", "4", "--batch-size", "2", "--samples", str(samples),
               "--width", str(width), "--height", str(height), "--db", f"{tmp}/db", "--runner", runner]
        cli = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, cwd=tmp)
        time.sleep(after)
        children = psutil.Process(cli.pid).children(recursive=True)
        start = time.monotonic()
        os.killpg(cli.pid, getattr(signal, f"SIG{sig}"))
        try:
            _, err = cli.communicate(timeout=cap)
            seconds = f"{time.monotonic() - start:.1f}"
        except subprocess.TimeoutExpired:
            os.killpg(cli.pid, signal.SIGKILL)
            _, err = cli.communicate()
            seconds = f">{cap:.0f}"
        time.sleep(1.0)
        left = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        return {"seconds": seconds, "code": cli.returncode, "said_stopping": "stopping" in err,
                "children_left": len(left), "forced": "stopped (" in err, "stderr": err}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--signal", choices=["INT", "TERM"], default="INT")
    parser.add_argument("--after", type=float, default=30.0, help="seconds between start and the signal")
    parser.add_argument("--runner", choices=["inline", "ray"], default="inline")
    parser.add_argument("--verbose", action="store_true", help="print the end of the CLI's stderr")
    parser.add_argument("--cap", type=float, default=300.0, help="seconds to wait for the CLI to exit")
    args = parser.parse_args()
    result = measure(args.samples, args.width, args.height, args.signal, args.after, args.cap, args.runner)
    print(f"render --runner {args.runner} --samples {args.samples} {args.width}x{args.height}, SIG{args.signal} after {args.after:.0f} s: "
          f"exited in {result['seconds']} s, code {result['code']}, said stopping: {result['said_stopping']}, "
          f"forced after the bound: {result['forced']}, children left: {result['children_left']}")
    if args.verbose:
        print(result["stderr"][-3000:])


if __name__ == "__main__":
    main()
