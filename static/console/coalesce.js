// Coalesce bursts of "something changed" into few runs of an async task (the list re-fetch).
//
// The first request starts a short wait (not restarted by later ones, so a steady stream of events
// cannot postpone the run forever); requests during the wait join that run. Requests made while a
// run is in flight queue exactly one more run after it, so the latest change is never missed.
// At most one run is in flight and one queued, whatever the number of requests.

export function coalesce(task, { delay = 150 } = {}) {
  let timer = null;
  let running = false;
  let queued = false;

  async function run() {
    timer = null;
    running = true;
    try {
      await task();
    } catch {
      /* the task reports its own failures; the next request tries again */
    } finally {
      running = false;
      if (queued) {
        queued = false;
        request();
      }
    }
  }

  function request() {
    if (running) {
      queued = true;
    } else if (timer === null) {
      timer = setTimeout(run, delay);
    }
  }

  return request;
}
