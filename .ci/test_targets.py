#!/usr/bin/python3
"""The build targets that the ctest tests chosen by the given ctest arguments run: their executables, and every
program their scripts are handed. So a CI lane builds only what it tests.

usage: test_targets.py BUILD_DIR [CTEST_ARGS...]   (prints the target names, one line)
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
targets = {line.split(":")[0] for line in ninja.stdout.splitlines() if line.endswith(": phony")}


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
        name = os.path.basename(argument)
        if argument.startswith(build + "/") and name in targets:
            wanted.add(name)
if not wanted:
    sys.exit(f"test_targets.py: no test selected by {' '.join(ctest_args)} runs a program built in {build}")
print(" ".join(sorted(wanted)))
