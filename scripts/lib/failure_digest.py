#!/usr/bin/env python3
"""scripts/lib/failure_digest.py JUNIT.xml: a few lines per failed test of a nextest JUnit
report (the test, then where it panicked and the message), for the end of scripts/test.sh's
output. Lab tests are left out: their own digest (tests/netns.rs, NAME.fail) says more."""
import sys
import xml.etree.ElementTree as ET

MAX_LINES = 8


def panic_lines(text):
    """The panic line and what follows it, else the last lines of the output."""
    lines = [l for l in (text or "").splitlines() if l.strip()]
    for i, line in enumerate(lines):
        if "panicked at" in line:
            return lines[i:i + MAX_LINES]
    return lines[-MAX_LINES:]


def main():
    try:
        root = ET.parse(sys.argv[1]).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"(no JUnit report to digest: {e})")
        return
    for case in root.iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is None:
            continue
        name = f"{case.get('classname', '')} {case.get('name', '')}".strip()
        if "netns_" in name:
            continue
        err = case.findtext("system-err") or ""
        out = case.findtext("system-out") or ""
        text = err if "panicked at" in err else (out if "panicked at" in out else err + out)
        print(f"FAILED {name}: {bad.get('message', '')}")
        for line in panic_lines(text or bad.text):
            print(f"    {line[:300]}")


if __name__ == "__main__":
    main()
