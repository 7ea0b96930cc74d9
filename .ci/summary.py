"""One line per test tier from the pytest JUnit reports .ci/run wrote; exit 1 on a failure, a
tier that could not run, or (under CI) any skipped test: a skip there is a test that did not run."""

import os
import pathlib
import sys
import xml.etree.ElementTree as ET

reports = pathlib.Path(sys.argv[1])
strict = os.environ.get("CI", "").lower() in ("1", "true", "yes")
bad = False
total = {"passed": 0, "failed": 0, "skipped": 0}
print("\n== summary")
for path in sorted(reports.iterdir()):
    if path.suffix == ".note":
        continue  # printed on its tier's line
    if path.suffix in (".failed", ".txt"):
        print(f"!! {path.read_text().strip()}")
        bad = True
        continue
    tier = path.stem.split("-", 1)[1]
    suites = ET.parse(path).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = count["failures"] + count["errors"]
    passed = count["tests"] - failed - count["skipped"]
    label = tier.replace("comfyui-", "ComfyUI ")
    note = path.with_suffix(".note")
    note = f"  [{note.read_text().strip()}]" if note.exists() else ""
    print(f"{label}: {passed} passed, {failed} failed, {count['skipped']} skipped{note}")
    for case in (c for s in suites for c in s.iter("testcase")):
        skip = case.find("skipped")
        if skip is not None:
            print(f"   skipped {case.get('name')}: {skip.get('message', '')}")
    total["passed"] += passed
    total["failed"] += failed
    total["skipped"] += count["skipped"]
    bad |= failed > 0 or count["tests"] == 0 or (strict and count["skipped"] > 0)
print(f"all tiers: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
if strict and total["skipped"]:
    print("!! tests were skipped under CI: each skip above is a test that did not run")
sys.exit(1 if bad else 0)
