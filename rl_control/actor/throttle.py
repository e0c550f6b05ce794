"""The lockstep update-to-data throttle: the simulation waits while the learner is behind."""

from __future__ import annotations


class UtdThrottle:
    """Pause while environment steps sent minus the steps the learner trained on exceed ``max_lag``.

    ``max_lag`` 0 never pauses. The learner's progress counts steps from every actor and from earlier runs,
    so the first progress message sets the offset: only this actor's steps are compared. With several actors
    feeding one learner that count grows with the others' steps too, so the learner's backlog (steps stored
    but not trained on, from every actor) is a lag as well: the larger of the two is compared.
    """

    def __init__(self, max_lag: int) -> None:
        self.max_lag = int(max_lag)
        self.sent = 0  # transitions published by this actor
        self.messages = 0  # transition messages published
        self.learner_env_steps = 0
        self.learner_backlog = 0
        self._offset: int | None = None
        self.paused = False
        self.pause_events = 0

    def record_sent(self, rows: int) -> None:
        """Count one published transition message of ``rows`` transitions."""
        self.sent += rows
        self.messages += 1

    def record_progress(self, learner_env_steps: int, learner_backlog: int = 0) -> None:
        """The learner's latest environment-step count and backlog (steps it has not trained on yet)."""
        if self._offset is None:
            self._offset = learner_env_steps - self.sent
        self.learner_env_steps = learner_env_steps
        self.learner_backlog = learner_backlog

    def lag(self, pending: int) -> int:
        """Steps (``pending`` not yet sent) the learner has not trained on: this actor's, or, when larger,
        the learner's backlog from every actor plus ``pending``."""
        own = self.sent + pending - (self.learner_env_steps - (self._offset or 0))
        return max(own, self.learner_backlog + pending)

    def should_pause(self, pending: int) -> bool:
        """True (pause this tick) while the lag exceeds ``max_lag``; counts each pause once."""
        if self.max_lag <= 0 or self.lag(pending) <= self.max_lag:
            self.paused = False
            return False
        if not self.paused:
            self.pause_events += 1
        self.paused = True
        return True
