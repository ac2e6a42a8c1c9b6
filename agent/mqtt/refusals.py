"""How many unauthenticated command refusals are audited one by one: a budget per minute.

The command topic is open to anyone who can reach the broker, and every refusal was an audit line
fsynced to disk: 20,000 garbage messages were 20,000 lines, without bound. Now the first
`BURST` refusals of a minute are audited in full (an operator sees what arrived), the rest are
counted by reason and written as one summary line when the minute ends. MQTT carries no sender
identity the agent can trust (the `actor` field is whatever the sender wrote), so the budget is
one for the whole topic. Authenticated commands are never summarised.
"""

from __future__ import annotations

from collections import Counter

WINDOW_S = 60.0
BURST = 60  # refusals audited in full per window: one a second on average


class RefusalBudget:
    def __init__(self, window_s: float = WINDOW_S, burst: int = BURST) -> None:
        self.window_s = window_s
        self.burst = burst
        self._start: float | None = None
        self._full = 0
        self._counted: Counter[str] = Counter()

    def admit(self, t: float, kind: str) -> bool:
        """One refusal of `kind` at time `t`: True to audit it in full, False if only counted.

        Call `ended(t)` first: a window that is over is summarised before a new one opens.
        """
        if self._start is None:
            self._start, self._full = t, 0
        if self._full < self.burst:
            self._full += 1
            return True
        self._counted[kind] += 1
        return False

    def ended(self, t: float) -> dict[str, int] | None:
        """The refusals counted (not audited) in a window that is over by `t`, by kind; None if
        the window is still open or counted nothing. A clock that stepped back ends it too."""
        if self._start is None or self._start <= t < self._start + self.window_s:
            return None
        counted = dict(sorted(self._counted.items()))
        self._start = None
        self._counted.clear()
        return counted or None
