"""The synchronous invoke core's metric handles, defined in maestro.metrics and passed through its
label caps. The asynchronous core calls maestro.metrics' functions instead; this module goes
away with the synchronous one."""

from maestro import metrics


class _Capped:
    """A metric whose `.labels(*values)` passes each value through its cap first."""

    def __init__(self, metric, *caps):
        self._metric = metric
        self._caps = caps

    def labels(self, *values):
        return self._metric.labels(*(cap(value) for cap, value in zip(self._caps, values, strict=True)))


INVOCATIONS = _Capped(metrics.INVOCATIONS, str, metrics.server_label)
INVOCATION_SECONDS = _Capped(metrics.INVOCATION_SECONDS, metrics.server_label)
POLICY_DECISIONS = _Capped(metrics.POLICY_DECISIONS, str, metrics.engine_label)
