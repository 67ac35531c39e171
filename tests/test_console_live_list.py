"""The live conversation list re-fetches itself at most twice for a burst of workspace events.

static/console/coalesce.js is a plain ES module, so Node runs it as the browser does. The fetch is
a promise the script settles itself, so the counts below do not depend on timing; waits only let
timers and promises run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

MODULE = Path(__file__).resolve().parent.parent / "static" / "console" / "coalesce.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js to run the console's ES modules")

HARNESS = """
import { coalesce } from %(module)s;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(check) {
  for (let i = 0; i < 500 && !check(); i++) await sleep(10);
}

let started = 0;
let finish = null;
const refresh = coalesce(() => {
  started += 1;
  return new Promise((resolve) => { finish = resolve; });
}, { delay: 20 });

const seen = {};
for (let i = 0; i < 50; i++) refresh();            // a burst: a claim, its queue change, messages...
await until(() => started === 1);
await sleep(100);
seen.during_first_fetch = started;
for (let i = 0; i < 50; i++) refresh();            // more of the burst while the fetch is in flight
await sleep(100);
seen.still_one_in_flight = started;
finish();
await until(() => started === 2);                  // the queued refetch picks up the latest change
await sleep(100);
seen.after_first = started;
finish();
await sleep(200);
seen.after_burst = started;                        // nothing more: the burst cost two fetches
refresh();                                         // a later event is not swallowed
await until(() => started === 3);
seen.later_event = started;
finish();

let attempts = 0;
const flaky = coalesce(() => {
  attempts += 1;
  return attempts === 1 ? Promise.reject(new Error("offline")) : Promise.resolve();
}, { delay: 5 });
flaky();
await until(() => attempts === 1);
await sleep(50);
flaky();                                           // a failed fetch does not jam the next one
await until(() => attempts === 2);
seen.after_failure = attempts;

console.log(JSON.stringify(seen));
"""


def _run(tmp_path: Path) -> dict[str, Any]:
    assert NODE is not None
    script = tmp_path / "harness.mjs"
    script.write_text(HARNESS % {"module": json.dumps(MODULE.as_uri())})
    done = subprocess.run([NODE, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_burst_of_events_costs_at_most_two_fetches_and_a_later_one_still_refreshes(tmp_path: Path) -> None:
    assert _run(tmp_path) == {
        "during_first_fetch": 1,
        "still_one_in_flight": 1,
        "after_first": 2,
        "after_burst": 2,
        "later_event": 3,
        "after_failure": 2,
    }


def test_the_conversation_list_refreshes_through_the_coalescer() -> None:
    script = (MODULE.parent / "conversations.js").read_text()
    assert 'import { coalesce } from "./coalesce.js";' in script
    assert "coalesce(refresh, { delay: 150 })" in script
