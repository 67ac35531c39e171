"""Figures 4 and 5: handoff timeouts (precision, with the worker killed once) and the claim storm
(over HTTP, and one layer down in threads calling the service)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from bench.profiles import (
    TARGET_LOSER_P99_MS,
    TARGET_TIMEOUT_KILLED_P99_S,
    TARGET_TIMEOUT_P99_S,
    TIMEOUT_SECONDS,
)
from bench.stats import storm_summary, summary_ms

if TYPE_CHECKING:
    from bench.cli import Bench


def _le(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def phase_claims(bench: Bench) -> None:
    assert bench.load is not None
    p = bench.profile
    result: dict[str, Any] = {}
    with bench.cpu(result):
        result.update(bench.load.call("claim_storm", timeout=900, claimers=p.claimers, trials=p.claim_trials))
    service = claim_storm_threads(bench, p.claimers, p.claim_trials)
    for name, run in (("http", result), ("service", service)):
        wrong = [w for w in run["winners_per_trial"] if w != 1]
        if wrong or run["errors"]:
            bench.problems.append(f"claim storm ({name}): {len(wrong)} trials without exactly one winner")
    bench.log(
        f"  HTTP: {result['trials_with_one_winner']}/{result['trials']} trials with one winner; "
        f"loser p99 {result['loser']['p99_ms']} ms; service: loser p99 {service['loser']['p99_ms']} ms"
    )
    bench.figures["claim_storm"] = {
        "value": result["loser"]["p99_ms"],
        "method": result["method"],
        "http": result,
        "service": service,
        "target": f"exactly one winner every trial, loser p99 <= {TARGET_LOSER_P99_MS:g} ms",
        "pass": result["trials_with_one_winner"] == result["trials"]
        and result["loser"]["p99_ms"] is not None
        and result["loser"]["p99_ms"] <= TARGET_LOSER_P99_MS,
    }


def claim_storm_threads(bench: Bench, claimers: int, trials: int) -> dict[str, Any]:
    """The same storm one layer down: ``handoff_claim`` in ``claimers`` threads of this process,
    each on its own pooled PostgreSQL connection (the GIL is shared: losers wait for it too)."""
    from django.contrib.auth.models import User
    from django.db import connection

    from chatbots.models import Chatbot
    from conversations.services import visitor_create
    from handoff.models import Handoff
    from handoff.state import visitor_current_conversation
    from handoff.transitions.claim import handoff_claim
    from handoff.transitions.request import handoff_request
    from pivra.errors import Conflict

    chatbot = Chatbot.objects.get(public_key=bench.chatbot_key)
    conversations = []
    for _ in range(trials):
        visitor = visitor_create(chatbot=chatbot, locale="en-US")
        conversation = visitor_current_conversation(visitor=visitor)
        handoff_request(
            visitor=visitor, conversation_public_id=str(conversation.public_id), trigger=Handoff.Trigger.BUTTON
        )
        conversations.append(str(conversation.public_id))
    agents = list(User.objects.filter(username__startswith="bench-agent-").order_by("username")[:claimers])
    barrier = threading.Barrier(len(agents), timeout=60)
    lock = threading.Lock()
    outcomes: list[list[str]] = [[] for _ in conversations]
    winner_latency: list[float] = []
    loser_latency: list[float] = []
    errors: list[str] = []

    def claimer(agent: User) -> None:
        try:
            for trial, conversation_id in enumerate(conversations):
                barrier.wait()
                fired = time.monotonic()
                try:
                    handoff_claim(agent=agent, conversation_public_id=conversation_id)
                    outcome = "won"
                except Conflict:
                    outcome = "lost"
                latency = time.monotonic() - fired
                with lock:
                    outcomes[trial].append(outcome)
                    (winner_latency if outcome == "won" else loser_latency).append(latency)
        except Exception as exc:
            with lock:
                errors.append(repr(exc)[:200])
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(agent,)) for agent in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    winners = [sum(1 for o in trial if o == "won") for trial in outcomes]
    return storm_summary(
        method=f"handoff.transitions.claim.handoff_claim in {len(agents)} threads",
        claimers=len(agents),
        winners_per_trial=winners,
        winner_seconds=winner_latency,
        loser_seconds=loser_latency,
        errors=errors,
    )


def phase_timeouts(bench: Bench) -> None:
    from chatbots.models import Chatbot
    from chatbots.services import chatbot_update_handoff_settings

    chatbot = Chatbot.objects.get(public_key=bench.chatbot_key)
    chatbot_update_handoff_settings(
        chatbot=chatbot,
        enabled=True,
        keywords=chatbot.handoff_keywords,
        waiting_message=chatbot.handoff_waiting_message,
        timeout_seconds=TIMEOUT_SECONDS,
        busy_message=chatbot.handoff_busy_message,
    )
    normal = timeout_run(bench, kill_worker=False)
    killed = timeout_run(bench, kill_worker=True)
    for name, run in (("normal", normal), ("worker killed", killed)):
        if run["fired_after_claim"]:
            bench.problems.append(f"timeouts ({name}): {run['fired_after_claim']} fired after a claim")
        if run["never_busy"]:
            bench.problems.append(f"timeouts ({name}): {run['never_busy']} never reached Team busy")
    bench.figures["timeout_precision"] = {
        "value": normal["lateness"]["p99_ms"],
        "timeout_s": TIMEOUT_SECONDS,
        "normal": normal,
        "worker_killed": killed,
        "target": f"lateness p99 <= {TARGET_TIMEOUT_P99_S:g} s, <= {TARGET_TIMEOUT_KILLED_P99_S:g} s after a "
        "worker kill; none fired after a claim",
        "pass": _le(normal["lateness"]["p99_ms"], TARGET_TIMEOUT_P99_S * 1000)
        and _le(killed["lateness"]["p99_ms"], TARGET_TIMEOUT_KILLED_P99_S * 1000)
        and not normal["fired_after_claim"]
        and not killed["fired_after_claim"]
        and not normal["never_busy"]
        and not killed["never_busy"],
    }


def timeout_run(bench: Bench, *, kill_worker: bool) -> dict[str, Any]:
    from handoff.models import Handoff

    assert bench.load is not None and bench.app is not None
    p = bench.profile
    started = bench.load.call(
        "timeout_start",
        timeout=600,
        handoffs=p.timeout_handoffs,
        window=p.timeout_window,
        claim_every=5,
        claim_after=TIMEOUT_SECONDS / 2,
    )
    requests = started["requests"]
    rows = {
        str(public_id): (deadline, status, timed_out_at, claimed_at)
        for public_id, deadline, status, timed_out_at, claimed_at in Handoff.objects.filter(
            conversation__public_id__in=[r["conversation"] for r in requests]
        ).values_list("conversation__public_id", "deadline_at", "status", "timed_out_at", "claimed_at")
    }
    if len(rows) != len(requests):
        raise RuntimeError(f"{len(requests)} handoffs requested, {len(rows)} found in the database")
    last_deadline = max(row[0].timestamp() for row in rows.values())
    # How long a request waited in the server before its handoff was written (its deadline set).
    queued = summary_ms(
        [rows[r["conversation"]][0].timestamp() - TIMEOUT_SECONDS - r["requested_wall"] for r in requests]
    )
    spread = last_deadline - min(row[0].timestamp() for row in rows.values())
    bench.log(f"  requests written {queued} after sending; deadlines spread over {spread:.1f} s")
    schedule: dict[str, Any] = {}
    if kill_worker:
        # Mid-wait: after the last request, before the first deadline; down for two seconds.
        time.sleep(1.0)
        schedule["killed_at_wall"] = time.time()
        bench.app.kill("worker")
        time.sleep(2.0)
        bench.app.start("worker")
        schedule["restarted_at_wall"] = time.time()
        first_deadline = min(row[0].timestamp() for row in rows.values())
        schedule["killed_before_first_deadline_s"] = round(first_deadline - schedule["killed_at_wall"], 2)
    collected = bench.load.call(
        "timeout_collect",
        timeout=300,
        settle_wall=last_deadline + 4.0,
        give_up_wall=last_deadline + (60.0 if kill_worker else 30.0),
    )["results"]
    final = {
        str(public_id): (status, timed_out_at, claimed_at)
        for public_id, status, timed_out_at, claimed_at in Handoff.objects.filter(
            conversation__public_id__in=list(rows)
        ).values_list("conversation__public_id", "status", "timed_out_at", "claimed_at")
    }
    lateness: list[float] = []
    never_busy = fired_after_claim = claimed_in_time = claim_failures = 0
    never_busy_sample: list[dict[str, Any]] = []
    fired_after_claim_sample: list[dict[str, Any]] = []
    first_deadline = min(row[0].timestamp() for row in rows.values())
    by_deadline: list[tuple[float, float]] = []  # (deadline after the first, lateness): when it was late
    write_lateness: list[float] = []  # the database's timed_out_at: tells a late timer from a late push
    for result in collected:
        deadline = rows[result["conversation"]][0].timestamp()
        status, timed_out_at, claimed_at = final[result["conversation"]]
        claim = result["claim"]
        if claim is not None:
            if claim.get("status") != 200 or claimed_at is None:
                claim_failures += 1
                continue
            if claimed_at.timestamp() < deadline:
                claimed_in_time += 1
                if result["busy_states"] or timed_out_at is not None:
                    fired_after_claim += 1
                    if len(fired_after_claim_sample) < 5:  # enough to tell a push from a write
                        fired_after_claim_sample.append(
                            {
                                "status": status,
                                "claimed_before_deadline_s": round(deadline - claimed_at.timestamp(), 3),
                                "timed_out_late_s": None
                                if timed_out_at is None
                                else round(timed_out_at.timestamp() - deadline, 3),
                                "busy_states": result["busy_states"],
                                "busy_seen_late_s": None
                                if result["busy_wall"] is None
                                else round(result["busy_wall"] - deadline, 3),
                                "claim_sent_late_s": round(claim["claim_sent_wall"] - deadline, 3),
                                "claim_done_late_s": round(claim["claim_done_wall"] - deadline, 3),
                            }
                        )
            continue
        if result["busy_wall"] is None:
            never_busy += 1
            if len(never_busy_sample) < 5:  # what the database says about a push that never came
                never_busy_sample.append(
                    {
                        "status": status,
                        "timed_out_late_s": None
                        if timed_out_at is None
                        else round(timed_out_at.timestamp() - deadline, 2),
                        "socket_open": result["socket_open"],
                        "state_frames": result.get("state_frames"),
                    }
                )
        else:
            lateness.append(result["busy_wall"] - deadline)
            by_deadline.append((round(deadline - first_deadline, 3), round(result["busy_wall"] - deadline, 3)))
            if timed_out_at is not None:
                write_lateness.append(timed_out_at.timestamp() - deadline)
    summary = summary_ms(lateness)
    bench.log(
        f"  {'worker killed' if kill_worker else 'normal'}: lateness p50 {summary['p50_ms']} ms "
        f"p99 {summary['p99_ms']} ms max {summary['max_ms']} ms; claimed in time {claimed_in_time}, "
        f"fired after claim {fired_after_claim}, never busy {never_busy}; "
        f"{sum(1 for x in lateness if x > 1.0)} later than 1 s; timed_out_at lateness {summary_ms(write_lateness)}"
    )
    return {
        "handoffs": len(requests),
        "timed_out": len(lateness),
        "lateness": summary,
        "write_lateness": summary_ms(write_lateness),
        "lateness_by_deadline": sorted(by_deadline),
        "early": sum(1 for x in lateness if x < 0),
        "claimed_before_deadline": claimed_in_time,
        "claim_failures": claim_failures,
        "fired_after_claim": fired_after_claim,
        "fired_after_claim_sample": fired_after_claim_sample,
        "never_busy": never_busy,
        "never_busy_sample": never_busy_sample,
        "setup_seconds": started["setup_seconds"],
        "request_queued": queued,
        "deadline_spread_s": round(spread, 2),
        **schedule,
    }
