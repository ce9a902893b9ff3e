#!/usr/bin/python3
"""The watchdog end to end (Note [Watchdog]): runs each scenario of watchdog_scenarios under mpirun and checks that the
job ends as it should, naming the culprit (rank 1), in the time docs/errors.md gives: a deadlock named after 1 to 3 s,
a timeout after it passes and within 1.5 s more, a stopped rank within 7 s, a killed rank's job ended within 5 s, a
mismatch and a throw within 1 s; and a rank that is only busy (7 s, longer than it takes to blame a stopped rank)
never blamed.

usage: watchdog.py WATCHDOG_SCENARIOS RANKS
"""
import os
import re
import subprocess
import sys
import time

program, ranks = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from script_checks import ENV, failures, finish, mpirun, sanitizer_report  # noqa: E402
MPIRUN = mpirun(ranks)

# scenario, extra flags, expected exit (0 or "non-zero"), texts the output must hold, bounds on the first report (s),
# limit on the job, from the scenario's start on rank 0 to mpirun's end (s)
CASES = [
    ("skip", [], "non-zero", ["deadlock, no rank can proceed", "rank 1 waits in recv #0 (float32 x 1000 from rank 0, "
                              "tag 7) on 'world'", "rank 0 waits in allreduce #1 (float32 x 1000, sum) on 'world'"],
     (1.0, 3.0), 10),
    ("skip-pipeline", [], "non-zero", ["deadlock, no rank can proceed", "in allreduce #0 (float32 x 1000, sum) on "
                                       "'pair'", "rank 1 waits in recv #0"], (1.0, 3.0), 10),
    ("late", [], 0, ["watchdog_scenarios: ok"], None, 20),
    ("timeout", ["--timeout-ms", "1500"], "non-zero",
     ["allreduce #1 (float32 x 1000, sum) on communicator 'world' did not finish within 1500 ms",
      "rank 1 has not arrived: rank 1 is not waiting on any communication"], (1.5, 3.0), 10),
    ("stopped", [], "non-zero", ["rank 1 does not answer"], (2.0, 7.0), 10),
    ("killed", [], "non-zero", ["rank 1", "signal 9"], None, 5),
    ("throws", [], "non-zero", ["rank 1 failed after", "a planted failure"], (0.0, 1.0), 10),
    ("mismatch", [], "non-zero", ["collective mismatch", "rank 1 called allreduce #1 (float32 x 999, sum)"], (0.0, 1.0),
     10),
]

print(f"{'scenario':<15} {'exit':>5} {'first report s':>15} {'job ended s':>12}")
for scenario, flags, exit_code, texts, report_bounds, job_limit in CASES:
    result = subprocess.run(MPIRUN + [program, "--scenario", scenario, *flags], env=ENV, capture_output=True,
                            text=True, timeout=120)
    ended = time.time()
    output = result.stdout + result.stderr
    started = re.search(r"watchdog_scenarios: started at ([0-9.]+)", output)
    wall = ended - float(started.group(1)) if started else float("inf")
    reports = [float(s) for s in re.findall(r"failed after ([0-9.]+) s", output)]
    first = min(reports) if reports else None
    print(f"{scenario:<15} {result.returncode:>5} {first if first is not None else '-':>15} {wall:>12.1f}")
    problems = []
    if exit_code == 0 and result.returncode != 0:
        problems.append(f"exit {result.returncode}, expected 0")
    if exit_code != 0 and result.returncode == 0:
        problems.append("exit 0, expected a failure")
    problems += [f"no '{text}' in the output" for text in texts if text not in output]
    if sanitizer_report(output):
        problems.append(f"a sanitizer's report: {sanitizer_report(output)}")
    if report_bounds is not None and (first is None or not report_bounds[0] <= first <= report_bounds[1]):
        problems.append(f"first report after {first} s, expected between {report_bounds[0]} and {report_bounds[1]} s")
    if not started:
        problems.append("no 'watchdog_scenarios: started at' line from rank 0")
    elif wall > job_limit:
        problems.append(f"the job took {wall:.1f} s to end, limit {job_limit} s")
    if problems:
        failures.append(scenario)
        print(f"FAIL {scenario}: " + "; ".join(problems) + "\n" + output)

finish()
