"""Benchmark: how long the CLI takes to start, next to the libraries it must not import.

Run: ``.venv/bin/python benchmarks/bench_core_cli_startup.py [--repeat 5]``.
Prints the median wall time of fresh interpreters doing, side by side: nothing, ``import
medgr2.cli``, ``medgr2 --help``, ``medgr2 plugins list --json`` (every built-in plugin loaded), a
registry build with no plugin, and ``import torch`` / ``import torch, transformers, trl`` — what
one heavy import at module level in any plugin would add to every command. Ratios are against
``python -c pass``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": "pass",
    "import medgr2.cli": "import medgr2.cli",
    "medgr2 --help": "from medgr2.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "medgr2 plugins list --json": (
        "from medgr2.cli import main\ntry:\n    main(['plugins', 'list', '--json'])\nexcept SystemExit:\n    pass"),
    "load_registry(autoload=False)": "from medgr2.plugins import load_registry\nload_registry(autoload=False)",
    "import torch": "import torch",
    "import torch, transformers, trl": "import torch, transformers, trl",
}


def wall(code: str, repeat: int) -> float:
    """Median wall time (s) of ``repeat`` fresh interpreters running ``code`` (output discarded)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Run every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="Interpreters per case (median reported).")
    parser.add_argument("--skip-heavy", action="store_true", help="Leave out the torch/transformers/trl rows.")
    args = parser.parse_args()
    results = {}
    for name, code in CASES.items():
        if args.skip_heavy and "torch" in code:
            continue
        results[name] = wall(code, args.repeat)
    base = results["python -c pass"]
    print(f"{'case':36} {'median s':>9} {'x python':>9}")
    for name, seconds in results.items():
        print(f"{name:36} {seconds:9.3f} {seconds / base:9.1f}")
    if "import torch, transformers, trl" in results:
        extra = results["import torch, transformers, trl"] - base
        print(f"\none heavy import in a plugin.py would add ~{extra:.1f} s to every command, "
              f"{extra / max(results['medgr2 --help'] - base, 1e-9):.0f}x what `medgr2 --help` costs now")


if __name__ == "__main__":
    main()
