"""What the Python test scripts share: how they start mpirun on these machines, and how they report their checks
(one "ok"/"FAIL" line each; the script's exit code says whether any failed).

A script imports it after putting this folder on its path:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
"""
import os
import sys

# Open MPI refuses to start as root without these; CI runs as root.
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

failures = []


def mpirun(ranks):
    """mpirun for `ranks` processes on this machine: more ranks than cores allowed, shared memory and TCP."""
    return ["mpirun", "--oversubscribe", "--bind-to", "none", "--mca", "pml", "ob1", "--mca", "btl",
            "self,vader,tcp", "-np", str(ranks)]


# What AddressSanitizer, UndefinedBehaviorSanitizer and ThreadSanitizer print when they find something. A case that
# expects a non-zero exit cannot tell a sanitizer's abort from the error it expects by the exit code alone.
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer", "runtime error: ")


def sanitizer_report(output):
    """The first line of a sanitizer's report in `output`, or None."""
    for line in output.splitlines():
        if any(marker in line for marker in SANITIZER_REPORTS):
            return line
    return None


def check(condition, what, detail=""):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        if detail:
            print(detail)
        failures.append(what)


def finish():
    sys.exit(1 if failures else 0)
