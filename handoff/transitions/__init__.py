"""The handoff state machine: request, claim, reply, resolve, expire, capture lead, continue with AI.

One module per concern; callers import each transition from its module (nothing is re-exported here):

- ``shared``: open statuses, availability, the state announcement, outbox rows, the agent-side lookup;
- ``request``: the visitor's request and the keyword offer;
- ``timers``: the expiry timer, its re-arming, expiry (pending → Team busy, ending any running offer) and the sweep;
- ``claim``: an agent claims a handoff (while an offer runs, only its agent: accepting is claiming);
- ``offers``: an offer of a waiting handoff to one agent (transfer, round robin), its decline and expiry sweep
  (a transfer that ends so goes back to the queue through ``requeue``);
- ``transfer``, ``release``, ``takeover``: the holder hands a live chat to an online colleague or back to the
  queue; an owner or admin takes one over;
- ``requeue``: THE way back to the queue (release, an agent removed / deactivated / deleted — hooked in
  ``handoff.departures`` —, the stranded sweep, a transfer nobody accepted);
- ``reply``: the assignee's replies;
- ``resolve``: closing a handoff (an agent's Resolve, a newer request superseding it, the idle sweep);
- ``idle``: the idle clock of a live chat and the sweep that resolves silent ones (and requeues stranded ones);
- ``lead``: the visitor's mobile number (Team busy form);
- ``continue_ai``: the visitor leaves for the AI ("Continue with AI", "Start new conversation").

Each transition runs in one transaction: a guarded update (``… WHERE status IN (…)``) decides who
wins, the conversation log gets the next event, the domain event goes to the outbox, and the
broadcasts leave only after commit.

Lock order. Every transition on an existing handoff — claim, resolve, expire, continue with AI,
transfer, take-over, the end of an offer, release (through requeue) —
locks the handoff row (by its guarded update or ``select_for_update``) before the conversation row.
A request is the one exception: it starts under its own conversation's lock (its handoff does not
exist yet) and then supersedes the visitor's other waiting handoffs, each handoff row before that
conversation's row. That cannot deadlock, because no transaction that holds another handoff or
conversation waits for the requesting conversation's lock. Reply and lead capture lock only the
conversation and read the handoff; a reply (and a visitor's message) also moves the live handoff's idle
clock, with ``FOR UPDATE SKIP LOCKED`` — under the conversation's lock it never waits for a handoff row.
A claim or a take-over then share-locks the agent's membership and user rows
(``agent_can_act_locked``, ``member_role_locked``), after the handoff row. A member's removal, move or
deactivation (``handoff.departures``) first locks the handoff rows that member holds or is offered and
only then changes the membership or user row — so a claim waits for a removal's commit, or a removal
for the claim's, never both.
"""
