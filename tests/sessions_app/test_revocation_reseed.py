"""Re-seeding revocations into Redis from `mcp_sessions` (persistence on) when Redis lost its data
while the re-seed ran: the sentinel, which tells every reader that Redis holds every revocation,
must then not be set, or a revocation made before the loss would be forgotten while Redis claims
to be complete."""

from __future__ import annotations

from sessions_app.services import rebuild_revocations, session_revoke
from sessions_app.store import get_store
from tests.sessions_app.helpers import RUN, create, flush_cache, outcome


class LosingStore:
    """The real store, whose data is lost (FLUSHDB, a Redis restart) right after the re-seed has
    written its revocation keys and before it sets the sentinel."""

    def __init__(self, store) -> None:
        self.store = store

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def mark_revoked(self, items) -> None:
        self.store.mark_revoked(items)
        flush_cache()


def test_a_rebuild_that_lost_its_keys_to_a_flush_does_not_set_the_sentinel(persisted):
    # Given a revoked session
    record, token = create(run_id=RUN, scopes=["mcp:invoke"], ttl_seconds=600)
    session_revoke(run_id=RUN, sid=record.sid)
    # When Redis loses its data while a re-seed writes the revocations back
    rebuild_revocations(LosingStore(get_store()))
    # Then Redis does not claim to hold every revocation, so the token is checked in the table
    assert get_store().is_revoked_with_sentinel(record.sid) == (False, False)
    assert outcome(token) == "session_revoked"
    # And a re-seed that nothing interrupts sets the sentinel again, over complete keys
    assert rebuild_revocations() == 1
    assert get_store().is_revoked_with_sentinel(record.sid) == (True, True)
