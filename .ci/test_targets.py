#!/usr/bin/python3
"""What to build for the ctest tests chosen by the given ctest arguments: their executables, and every program their
scripts are handed, as ninja output paths. So a CI lane builds only what it tests.

usage: test_targets.py BUILD_DIR [CTEST_ARGS...]   (prints the paths, relative to BUILD_DIR, on one line)
"""
import json
import os
import re
import shlex
import subprocess
import sys

build, ctest_args = os.path.abspath(sys.argv[1]), sys.argv[2:]
listing = subprocess.run(["ctest", "--show-only=json-v1", *ctest_args], cwd=build, capture_output=True, text=True,
                         check=True)
ninja = subprocess.run(["ninja", "-C", build, "-t", "targets", "all"], capture_output=True, text=True, check=True)
# Files ninja can build, by their path in the build folder ("runtime/dtrain": target names can clash, the library and
# the command are both "dtrain").
outputs = {line.split(":")[0] for line in ninja.stdout.splitlines()}


def command_of(test):
    """The test's command line; before its executable is built ctest leaves it out, so read it from CTestTestfile."""
    if "command" in test:
        return test["command"]
    folder = next(p["value"] for p in test.get("properties", []) if p["name"] == "WORKING_DIRECTORY")
    with open(os.path.join(folder, "CTestTestfile.cmake")) as f:
        found = re.search(r"^add_test\(" + re.escape(test["name"]) + r" (.*)\)$", f.read(), re.M)
    return shlex.split(found.group(1)) if found else []


wanted = set()
for test in json.loads(listing.stdout)["tests"]:
    for argument in command_of(test):
        relative = os.path.relpath(argument, build) if argument.startswith(build + "/") else None
        if relative in outputs:
            wanted.add(relative)
if not wanted:
    sys.exit(f"test_targets.py: no test selected by {' '.join(ctest_args)} runs a program built in {build}")
print(" ".join(sorted(wanted)))
