"""Where session state lives outside PostgreSQL: revocation keys, the flush sentinel and, when
sessions are not persisted, a per-run index of the run's sessions.

Two implementations with one interface:
- `RedisStore` (the default cache is django-redis): raw redis-py commands on django-redis's own
  connection pool (same URL, same 1 s timeouts). Raw commands because the index needs atomic hash
  updates and the cleanup needs SCAN, and because the hot path should not pay for pickling.
- `CacheStore` (any other cache, i.e. the embedded file cache): the same behaviour over the Django
  cache API. Revocation keys are shared by every process on the machine (web, gRPC, worker);
  run-index updates are read-modify-write under a process lock, so in the embedded mode two
  processes changing one run's index at the same instant can lose a listing entry (never a
  revocation). Redis is the answer for anything beyond a development machine.

Every Redis failure surfaces as `StoreUnavailable`; callers turn it into a domain error.

Revocations in Redis, three ways, each for a reader: `rev:<sid>` keys (one GET answers "is this sid
revoked?"), a sorted set of revoked sids scored by when each token dies (a worker re-reads all of
them in one ZRANGEBYSCORE after it (re)connects), and a message on a pub/sub channel (every worker
adds the sid to its in-process set at once: sessions_app.revocation).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterable

from django.core.cache import caches

class StoreUnavailable(Exception):
    pass


def _is_redis(backend) -> bool:
    return type(backend).__module__.startswith("django_redis")


def get_store() -> RedisStore | CacheStore:
    """The store for the current default cache. Memoised on the cache object itself, so a settings
    change (tests override CACHES) gets a new store with no signal handling."""
    backend = caches["default"]
    store = getattr(backend, "_maestro_session_store", None)
    if store is None:
        prefix = f"{backend.key_prefix}:sess" if backend.key_prefix else "sess"
        store = RedisStore(backend, prefix) if _is_redis(backend) else CacheStore(backend)
        backend._maestro_session_store = store
    return store


# Sets the sentinel only while the re-seed's marker still exists: a loss of Redis's data during
# the re-seed (it took the marker, and perhaps revocation keys written meanwhile) leaves no sentinel.
_SENTINEL_IF_MARKED = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""
REBUILD_MARKER_SECONDS = 600

_UPDATE_EXISTING = """
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""


class RedisStore:
    def __init__(self, backend, prefix: str) -> None:
        import redis

        self._errors = (redis.RedisError, OSError)
        self._client = backend.client.get_client(write=True)
        self.prefix = prefix
        self.sentinel_key = f"{prefix}:sentinel"
        self.lock_key = f"{prefix}:rebuild-lock"
        self.revoked_key = f"{prefix}:revoked"
        self.channel = f"{prefix}:revocations"
        self._update_script = self._client.register_script(_UPDATE_EXISTING)
        self._sentinel_script = self._client.register_script(_SENTINEL_IF_MARKED)

    def rev_key(self, sid: str) -> str:
        return f"{self.prefix}:rev:{sid}"

    def run_key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}"

    # --- revocation (the hot path) ---------------------------------------------------------

    def is_revoked(self, sid: str) -> bool:
        try:
            return self._client.get(self.rev_key(sid)) is not None
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc

    def is_revoked_with_sentinel(self, sid: str) -> tuple[bool, bool]:
        """(revoked, sentinel present) in one round trip (MGET)."""
        try:
            revoked, sentinel = self._client.mget(self.rev_key(sid), self.sentinel_key)
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc
        return revoked is not None, sentinel is not None

    def mark_revoked(self, items: Iterable[tuple[str, int]]) -> None:
        """Revoke each (sid, seconds to live) in one pipelined round trip: its `rev:<sid>` key, its
        member of the sorted set, and one message for the batch. Seconds <= 0 are skipped: that
        token is dead anyway. The message goes last, so a worker that hears it and re-reads finds
        the set already complete."""
        now = time.time()
        live = [(sid, ttl) for sid, ttl in items if ttl > 0]
        if not live:
            return
        try:
            pipe = self._client.pipeline(transaction=True)
            for sid, ttl in live:
                pipe.set(self.rev_key(sid), b"1", ex=ttl)
            pipe.zadd(self.revoked_key, {sid: now + ttl for sid, ttl in live})
            pipe.zremrangebyscore(self.revoked_key, "-inf", now)
            for start in range(0, len(live), 500):
                pipe.publish(self.channel, json.dumps({sid: now + ttl for sid, ttl in live[start : start + 500]}))
            pipe.execute()
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc

    def forget(self, sids: Iterable[str]) -> None:
        sids = list(sids)
        keys = [self.rev_key(s) for s in sids]
        if not keys:
            return
        try:
            for start in range(0, len(keys), 1000):
                self._client.delete(*keys[start : start + 1000])
                self._client.zrem(self.revoked_key, *sids[start : start + 1000])
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc

    def set_sentinel(self, *, marker: str | None = None) -> bool:
        """Set the sentinel; with a `marker` (from `rebuild_begin`), only if it still exists."""
        try:
            if marker is None:
                self._client.set(self.sentinel_key, str(time.time()).encode())
                return True
            return bool(self._sentinel_script(keys=[self.sentinel_key, marker], args=[str(time.time())]))
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc

    def rebuild_begin(self) -> str:
        """A marker key that a loss of Redis's data takes with it (see `set_sentinel`)."""
        marker = f"{self.prefix}:rebuilding:{secrets.token_hex(8)}"
        try:
            self._client.set(marker, b"1", ex=REBUILD_MARKER_SECONDS)
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc
        return marker

    def try_lock(self, seconds: int) -> bool:
        try:
            return bool(self._client.set(self.lock_key, b"1", ex=seconds, nx=True))
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc

    def unlock(self) -> None:
        try:
            self._client.delete(self.lock_key)
        except self._errors:
            pass  # the lock expires on its own

    # --- the per-run index (sessions not persisted) ----------------------------------------

    def index_put(self, run_id: str, record: dict, ttl: int) -> None:
        """One round trip: HSET, then make the hash live at least `ttl` more seconds (NX sets a
        first expiry, GT only ever extends it; Redis >= 7)."""
        key = self.run_key(run_id)
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(key, record["sid"], json.dumps(record))
            pipe.expire(key, ttl, nx=True)
            pipe.expire(key, ttl, gt=True)
            pipe.execute()
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def aindex_put(self, run_id: str, record: dict, ttl: int) -> None:
        """`index_put` for the data plane, on its own event loop's Redis client."""
        from maestro import aredis

        key = self.run_key(run_id)
        try:
            pipe = aredis.client().pipeline(transaction=True)
            pipe.hset(key, record["sid"], json.dumps(record))
            pipe.expire(key, ttl, nx=True)
            pipe.expire(key, ttl, gt=True)
            await pipe.execute()
        except aredis.redis_errors() as exc:
            raise StoreUnavailable(str(exc)) from exc

    def index_get(self, run_id: str) -> list[dict]:
        try:
            values = self._client.hvals(self.run_key(run_id))
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [json.loads(v) for v in values]

    def index_get_one(self, run_id: str, sid: str) -> dict | None:
        try:
            value = self._client.hget(self.run_key(run_id), sid)
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc
        return json.loads(value) if value else None

    def index_update(self, run_id: str, records: list[dict]) -> None:
        """Rewrite existing entries (a revocation), atomically and only where they still exist, so
        an index that expired meanwhile is never re-created without an expiry."""
        if not records:
            return
        args = [x for r in records for x in (r["sid"], json.dumps(r))]
        try:
            self._update_script(keys=[self.run_key(run_id)], args=args)
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc

    def index_remove_expired(self, cutoff: float) -> list[str]:
        """Drop entries whose `expires_at` is before `cutoff` from every run index; their sids."""
        removed: list[str] = []
        try:
            for key in self._client.scan_iter(match=f"{self.prefix}:run:*", count=500):
                dead = [sid for sid, raw in self._client.hgetall(key).items() if json.loads(raw)["expires_at"] < cutoff]
                if dead:
                    self._client.hdel(key, *dead)
                    removed.extend(s.decode() for s in dead)
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from exc
        return removed


class CacheStore:
    """The embedded fallback over the Django cache API (the file cache in ./data by default)."""

    _lock = threading.Lock()

    def __init__(self, backend) -> None:
        self._cache = backend
        self.sentinel_key = "sess:sentinel"
        self.runs_key = "sess:runs"
        self.lock_key = "sess:rebuild-lock"

    def rev_key(self, sid: str) -> str:
        return f"sess:rev:{sid}"

    def run_key(self, run_id: str) -> str:
        return f"sess:run:{run_id}"

    def is_revoked(self, sid: str) -> bool:
        return self._cache.get(self.rev_key(sid)) is not None

    def is_revoked_with_sentinel(self, sid: str) -> tuple[bool, bool]:
        found = self._cache.get_many([self.rev_key(sid), self.sentinel_key])
        return self.rev_key(sid) in found, self.sentinel_key in found

    def mark_revoked(self, items: Iterable[tuple[str, int]]) -> None:
        for sid, ttl in items:
            if ttl > 0:
                self._cache.set(self.rev_key(sid), 1, timeout=ttl)

    def forget(self, sids: Iterable[str]) -> None:
        self._cache.delete_many([self.rev_key(s) for s in sids])

    def set_sentinel(self, *, marker: str | None = None) -> bool:
        if marker is not None:
            if self._cache.get(marker) is None:
                return False
            self._cache.delete(marker)
        self._cache.set(self.sentinel_key, time.time(), timeout=None)
        return True

    def rebuild_begin(self) -> str:
        marker = f"sess:rebuilding:{secrets.token_hex(8)}"
        self._cache.set(marker, 1, timeout=REBUILD_MARKER_SECONDS)
        return marker

    def try_lock(self, seconds: int) -> bool:
        return self._cache.add(self.lock_key, 1, timeout=seconds)

    def unlock(self) -> None:
        self._cache.delete(self.lock_key)

    # Index entries never expire on their own here: the cleanup prunes them (the runs set is how
    # it finds them, since the cache API cannot scan).
    def index_put(self, run_id: str, record: dict, ttl: int) -> None:
        with self._lock:
            entries = self._cache.get(self.run_key(run_id)) or {}
            entries[record["sid"]] = record
            self._cache.set(self.run_key(run_id), entries, timeout=None)
            runs = self._cache.get(self.runs_key) or set()
            runs.add(run_id)
            self._cache.set(self.runs_key, runs, timeout=None)

    def index_get(self, run_id: str) -> list[dict]:
        return list((self._cache.get(self.run_key(run_id)) or {}).values())

    def index_get_one(self, run_id: str, sid: str) -> dict | None:
        return (self._cache.get(self.run_key(run_id)) or {}).get(sid)

    def index_update(self, run_id: str, records: list[dict]) -> None:
        with self._lock:
            entries = self._cache.get(self.run_key(run_id))
            if entries:
                entries.update({r["sid"]: r for r in records if r["sid"] in entries})
                self._cache.set(self.run_key(run_id), entries, timeout=None)

    def index_remove_expired(self, cutoff: float) -> list[str]:
        removed: list[str] = []
        with self._lock:
            runs = self._cache.get(self.runs_key) or set()
            for run_id in list(runs):
                entries = self._cache.get(self.run_key(run_id)) or {}
                dead = [sid for sid, r in entries.items() if r["expires_at"] < cutoff]
                for sid in dead:
                    del entries[sid]
                removed.extend(dead)
                if entries:
                    self._cache.set(self.run_key(run_id), entries, timeout=None)
                else:
                    self._cache.delete(self.run_key(run_id))
                    runs.discard(run_id)
            self._cache.set(self.runs_key, runs, timeout=None)
        return removed
