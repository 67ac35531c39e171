"""The handoff state machine: request, claim, reply, resolve, expire, capture lead, continue with AI.

One module per concern; callers import each transition from its module (nothing is re-exported here):

- ``shared``: open statuses, availability, the state announcement, outbox rows, the agent-side lookup;
- ``request``: the visitor's request and the keyword offer;
- ``timers``: the expiry timer, its re-arming, expiry (pending → Team busy) and the sweep;
- ``claim``: an agent claims a handoff;
- ``reply``: the assignee's replies;
- ``resolve``: closing a handoff (an agent's Resolve, or a newer request superseding it);
- ``lead``: the visitor's mobile number (Team busy form);
- ``continue_ai``: the visitor leaves for the AI ("Continue with AI", "Start new conversation").

Each transition runs in one transaction: a guarded update (``… WHERE status IN (…)``) decides who
wins, the conversation log gets the next event, the domain event goes to the outbox, and the
broadcasts leave only after commit.

Lock order. Every transition on an existing handoff — claim, resolve, expire, continue with AI —
locks the handoff row (by its guarded update or ``select_for_update``) before the conversation row.
A request is the one exception: it starts under its own conversation's lock (its handoff does not
exist yet) and then supersedes the visitor's other waiting handoffs, each handoff row before that
conversation's row. That cannot deadlock, because no transaction that holds another handoff or
conversation waits for the requesting conversation's lock. Reply and lead capture lock only the
conversation and read the handoff.
"""
