"""Bench profiles: ``smoke`` (small, under three minutes, run by CI) and ``full`` (the real figures).
Figures 1 and 3 run the same schedule against Pivra and against the floor reference server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    # (1) agent reply → widget latency
    latency_levels: tuple[int, ...]
    latency_rate: float  # replies per second, all agents together
    latency_duration: float
    latency_agents: int
    # (3) throughput ramp: aggregate reply rates tried in order, each for throughput_step seconds
    throughput_rates: tuple[float, ...]
    throughput_step: float
    # (2) idle sockets
    idle_target: int
    idle_step: int
    idle_concurrency: int
    idle_hold: float
    # (4) timeout precision
    timeout_handoffs: int
    timeout_window: float  # the requests are spread over this many seconds
    # (5) claim storm
    claimers: int
    claim_trials: int
    # (7) chaos soak: conversations x seconds, each side sending every chaos_interval s on average,
    # Redis / the workers / daphne each killed chaos_kills_each times for chaos_outage seconds
    chaos_conversations: int
    chaos_duration: float
    chaos_interval: float
    chaos_kills_each: int
    chaos_outage: tuple[float, float]
    chaos_settle: float

    @property
    def agents(self) -> int:
        return max(self.claimers, self.latency_agents)


SMOKE = Profile(
    name="smoke",
    latency_levels=(10, 50),
    latency_rate=40,
    latency_duration=4,
    latency_agents=10,
    throughput_rates=(20, 40, 80),
    throughput_step=3,
    idle_target=500,
    idle_step=250,
    idle_concurrency=50,
    idle_hold=3,
    timeout_handoffs=50,
    timeout_window=1,
    claimers=20,
    claim_trials=10,
    chaos_conversations=20,
    chaos_duration=30,
    chaos_interval=3,
    chaos_kills_each=1,
    chaos_outage=(2.0, 3.0),
    chaos_settle=30,
)

FULL = Profile(
    name="full",
    latency_levels=(10, 100, 200),
    latency_rate=200,  # the comparison: 200 conversations at 200 replies/s
    latency_duration=20,
    # Agents each with their console socket, as many as the claim storm logs in anyway: 600 replies/s
    # are 12 a second per socket, under the console's per-socket command limit (30/s).
    latency_agents=50,
    # One ramp for Pivra and the floor: fine steps where Pivra's target lies (600/s), coarser up to
    # past where the floor saturates (~1,300-1,850/s on this kind of machine).
    throughput_rates=(25, 50, 100, 200, 300, 400, 500, 600, 800, 1000, 1300, 1600, 2000, 2500, 3000, 4000),
    throughput_step=10,
    idle_target=10_000,
    idle_step=1000,
    idle_concurrency=100,
    idle_hold=30,
    timeout_handoffs=500,
    timeout_window=5,
    claimers=50,
    claim_trials=200,
    chaos_conversations=200,
    chaos_duration=180,
    chaos_interval=15,
    chaos_kills_each=2,
    chaos_outage=(2.0, 5.0),
    chaos_settle=60,
)

PROFILES = {p.name: p for p in (SMOKE, FULL)}

# Targets (printed next to each figure; a miss is reported, not an error).
TARGET_LATENCY_P99_MS = 10.0
TARGET_IDLE_SOCKETS = 10_000
TARGET_KB_PER_SOCKET = 30.0
TARGET_THROUGHPUT = 3000.0
# Issue 14: Pivra ÷ the floor reference server (bench/floor/), measured in the same run.
FLOOR_P50_RATIO_MAX = 1.5  # reply latency p50 at 200 conversations @ 200/s
FLOOR_P99_RATIO_MAX = 2.0  # reply latency p99 at 200 conversations @ 200/s
FLOOR_SATURATION_RATIO_MIN = 0.5
TARGET_SATURATION = 600.0  # replies/s delivered within THROUGHPUT_P99_LIMIT_MS, default process count
THROUGHPUT_P99_LIMIT_MS = 250.0
TARGET_TIMEOUT_P99_S = 1.0
TARGET_TIMEOUT_KILLED_P99_S = 5.0
TARGET_LOSER_P99_MS = 20.0
TARGET_LOADER_GZIP_BYTES = 15 * 1024
TIMEOUT_SECONDS = 10
