"""Where presence lives: in Redis with the Redis layers, in memory otherwise.

A channel's presence is a set of *entries*, one per (server process, member):
``"<hub id>|<member key>"``, each scored by its heartbeat deadline, with the
number of streams behind it. A member is present while one live entry names
it. Every change runs as one Redis script, so two processes never decide a
join or a leave from different views of the set (Redis orders the scripts:
no consensus of our own). Every change gets a version from a per-channel
counter, so clients apply join and leave events in the order Redis made them,
whichever process announced them.

Sorted sets scored by deadline, as Centrifugo keeps presence: an entry whose
process died is swept once its deadline passes, by the next update of any
process, and its member's leave is announced by that process.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .conf import conf

#: The member key of a process's anonymous streams: counted, never listed.
ANONYMOUS = "-"
#: Key prefixes in Redis, per kind of set: members of a presence channel, and
#: the processes with a stream on a channel (``channel_occupied``).
PRESENCE = "pr"
OCCUPANCY = "oc"
# Lua's unpack() takes a few thousand values at most: bigger reads go in chunks.
_CHUNK = 1000


class PresenceUnavailable(Exception):
    """The presence store did not answer (Redis down or stalled)."""


@dataclass(frozen=True)
class Change:
    """A member appeared or disappeared across every process."""

    kind: str  # "join" or "leave"
    key: str
    member: str  # the member data, as JSON text
    version: int


@dataclass(frozen=True)
class Result:
    """What one update changed, and how many of its entries were new: an
    entry a process had stored before and finds new again was lost (a Redis
    restart, or a stall past the timeout)."""

    changes: list[Change]
    created: int
    #: The channel's version after the update.
    version: int = 0
    #: Entries left on the channel, of every process.
    remaining: int = 0


@dataclass(frozen=True)
class State:
    """A channel's presence as one read saw it."""

    members: dict[str, str] = field(default_factory=dict)  # key -> member JSON
    streams: int = 0
    anonymous: int = 0
    version: int = 0


@dataclass
class Update:
    """What one process tells the store about one channel.

    ``entries``: member key -> (streams, member JSON) for every member this
    process holds (a heartbeat) or only the changed ones; ``removed``: keys
    of members this process no longer holds."""

    entries: dict[str, tuple[int, str]] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)


_UPDATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[1])
local hub = ARGV[2]
local nadd = tonumber(ARGV[3])
local created = 0
local out = {}
local function version()
  if redis.call('EXISTS', KEYS[5]) == 0 then
    redis.call('SET', KEYS[5], t[1] .. string.format('%06d', tonumber(t[2])))
  end
  return redis.call('INCR', KEYS[5])
end
local function gone(entry)
  local at = string.find(entry, '|', 1, true)
  local user = string.sub(entry, at + 1)
  redis.call('HDEL', KEYS[2], entry)
  if redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
    redis.call('HDEL', KEYS[3], user)
    local data = redis.call('HGET', KEYS[4], user) or '{}'
    redis.call('HDEL', KEYS[4], user)
    table.insert(out, 'leave')
    table.insert(out, user)
    table.insert(out, data)
    table.insert(out, version())
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, entry in ipairs(expired) do
  redis.call('ZREM', KEYS[1], entry)
  gone(entry)
end
for i = 4 + 3 * nadd, #ARGV do
  local entry = hub .. '|' .. ARGV[i]
  if redis.call('ZREM', KEYS[1], entry) == 1 then gone(entry) end
end
for j = 0, nadd - 1 do
  local user = ARGV[4 + 3 * j]
  local entry = hub .. '|' .. user
  local new = redis.call('ZADD', KEYS[1], now + ttl, entry)
  redis.call('HSET', KEYS[2], entry, ARGV[5 + 3 * j])
  if new == 1 then created = created + 1 end
  if new == 1 and redis.call('HINCRBY', KEYS[3], user, 1) == 1 then
    redis.call('HSET', KEYS[4], user, ARGV[6 + 3 * j])
    table.insert(out, 'join')
    table.insert(out, user)
    table.insert(out, ARGV[6 + 3 * j])
    table.insert(out, version())
  end
end
local keep = math.ceil(ttl * 2000)
for k = 1, 5 do redis.call('PEXPIRE', KEYS[k], keep) end
table.insert(out, 1, redis.call('ZCARD', KEYS[1]))
table.insert(out, 1, redis.call('GET', KEYS[5]) or '0')
table.insert(out, 1, tostring(created))
return out
"""

_READ = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local streams, anonymous = 0, 0
local users, seen = {}, {}
for i = 1, #live, 1000 do
  local chunk = {unpack(live, i, math.min(i + 999, #live))}
  local counts = redis.call('HMGET', KEYS[2], unpack(chunk))
  for j, entry in ipairs(chunk) do
    local n = tonumber(counts[j]) or 0
    local user = string.sub(entry, string.find(entry, '|', 1, true) + 1)
    streams = streams + n
    if user == '-' then
      anonymous = anonymous + n
    elseif not seen[user] then
      seen[user] = true
      table.insert(users, user)
    end
  end
end
local out = {redis.call('GET', KEYS[5]) or '0', tostring(streams), tostring(anonymous)}
for i = 1, #users, 1000 do
  local chunk = {unpack(users, i, math.min(i + 999, #users))}
  local data = redis.call('HMGET', KEYS[4], unpack(chunk))
  for j, user in ipairs(chunk) do
    table.insert(out, user)
    table.insert(out, data[j] or '{}')
  end
end
return out
"""


def _keys(kind: str, channel: str) -> list[str]:
    # One hash tag per channel: a Redis Cluster keeps a channel's keys together.
    base = f"sse:{kind}:{{{channel}}}"
    return [f"{base}:{suffix}" for suffix in ("z", "s", "u", "m", "v")]


def _update_args(hub_id: str, update: Update, ttl: float) -> list[Any]:
    args: list[Any] = [ttl, hub_id, len(update.entries)]
    for key, (streams, member) in update.entries.items():
        args.extend((key, streams, member))
    args.extend(update.removed)
    return args


def _result(raw: list[Any]) -> Result:
    values = [v.decode() if isinstance(v, bytes) else str(v) for v in raw]
    changes = [
        Change(values[i], values[i + 1], values[i + 2], int(values[i + 3]))
        for i in range(3, len(values), 4)
    ]
    return Result(changes, int(values[0]), int(values[1]), int(values[2]))


class RedisPresence:
    """Presence in Redis, reached with a client of its own per event loop
    (redis-py's asyncio connections belong to one loop), every call bounded."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._scripts: dict[asyncio.AbstractEventLoop, tuple[Any, Any]] = {}

    def _scripts_for_loop(self) -> tuple[Any, Any]:
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        for old in [other for other in self._clients if other.is_closed()]:
            self._clients.pop(old, None)
            self._scripts.pop(old, None)
        scripts = self._scripts.get(loop)
        if scripts is None:
            timeout = conf.SSE_PUBLISH_TIMEOUT
            client = aioredis.Redis.from_url(
                self.url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self._clients[loop] = client
            scripts = self._scripts[loop] = (
                client.register_script(_UPDATE),
                client.register_script(_READ),
            )
        return scripts

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await asyncio.wait_for(script(keys=keys, args=args), conf.SSE_PUBLISH_TIMEOUT)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise PresenceUnavailable(f"{type(exc).__name__}: {exc}"[:200]) from exc

    async def update(
        self, kind: str, channel: str, hub_id: str, update: Update, ttl: float
    ) -> Result:
        script = self._scripts_for_loop()[0]
        raw = await self._call(script, _keys(kind, channel), _update_args(hub_id, update, ttl))
        return _result(raw)

    async def read(self, kind: str, channel: str) -> State:
        script = self._scripts_for_loop()[1]
        raw = await self._call(script, _keys(kind, channel), [])
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in raw]
        members = {values[i]: values[i + 1] for i in range(3, len(values), 2)}
        return State(members, int(values[1]), int(values[2]), int(values[0]))


@dataclass
class _Channel:
    deadlines: dict[str, float] = field(default_factory=dict)  # entry -> deadline
    streams: dict[str, int] = field(default_factory=dict)  # entry -> streams
    refs: dict[str, int] = field(default_factory=dict)  # member key -> live entries
    members: dict[str, str] = field(default_factory=dict)
    version: int = 0


class MemoryPresence:
    """The same semantics in this process's memory (``InMemoryChannelLayer``:
    one process, possibly several event loops, hence the lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[tuple[str, str], _Channel] = {}
        #: The highest version given on any channel: a channel dropped when
        #: empty starts again above it, so its versions never go back in time
        #: (the clock may), and no channel is kept only for its version.
        self._floor = 0

    def _version(self, state: _Channel) -> int:
        if not state.version:
            state.version = max(time.time_ns() // 1000, self._floor)
        state.version += 1
        self._floor = max(self._floor, state.version)
        return state.version

    def _gone(self, state: _Channel, entry: str, out: list[Change]) -> None:
        user = entry.split("|", 1)[1]
        state.streams.pop(entry, None)
        state.refs[user] = state.refs.get(user, 0) - 1
        if state.refs[user] <= 0:
            del state.refs[user]
            data = state.members.pop(user, "{}")
            out.append(Change("leave", user, data, self._version(state)))

    async def update(
        self, kind: str, channel: str, hub_id: str, update: Update, ttl: float
    ) -> Result:
        now = time.monotonic()
        out: list[Change] = []
        created = 0
        with self._lock:
            state = self._channels.setdefault((kind, channel), _Channel())
            for entry in [e for e, d in state.deadlines.items() if d <= now]:
                del state.deadlines[entry]
                self._gone(state, entry, out)
            for key in update.removed:
                entry = f"{hub_id}|{key}"
                if state.deadlines.pop(entry, None) is not None:
                    self._gone(state, entry, out)
            for key, (streams, member) in update.entries.items():
                entry = f"{hub_id}|{key}"
                new = entry not in state.deadlines
                state.deadlines[entry] = now + ttl
                state.streams[entry] = streams
                if new:
                    created += 1
                    state.refs[key] = state.refs.get(key, 0) + 1
                    if state.refs[key] == 1:
                        state.members[key] = member
                        out.append(Change("join", key, member, self._version(state)))
            version, remaining = state.version, len(state.deadlines)
            if not state.deadlines and not state.refs:
                # Empty: dropped, or a client opening streams on ever new
                # channel names would grow this dict for good.
                del self._channels[(kind, channel)]
        return Result(out, created, version, remaining)

    async def read(self, kind: str, channel: str) -> State:
        now = time.monotonic()
        with self._lock:
            state = self._channels.get((kind, channel))
            if state is None:
                return State()
            streams = anonymous = 0
            users: dict[str, str] = {}
            for entry, deadline in state.deadlines.items():
                if deadline <= now:
                    continue
                n = state.streams.get(entry, 0)
                user = entry.split("|", 1)[1]
                streams += n
                if user == ANONYMOUS:
                    anonymous += n
                else:
                    users[user] = state.members.get(user, "{}")
            return State(users, streams, anonymous, state.version)

    def clear(self) -> None:
        with self._lock:
            self._channels.clear()


_memory = MemoryPresence()
_redis: dict[str, RedisPresence] = {}


def redis_url(layer_config: dict[str, Any]) -> str | None:
    """The URL of the first host in a channels-redis layer's ``CONFIG``."""
    hosts = layer_config.get("hosts") or ["redis://localhost:6379"]
    host = hosts[0]
    if isinstance(host, str):
        return host
    if isinstance(host, dict):
        address = host.get("address")
        if isinstance(address, str):
            return address
        if isinstance(address, list | tuple) and len(address) == 2:
            return f"redis://{address[0]}:{address[1]}"
        return None
    if isinstance(host, list | tuple) and len(host) == 2:
        return f"redis://{host[0]}:{host[1]}"
    return None


def get_backend() -> RedisPresence | MemoryPresence:
    """The store for the configured layer: Redis for the channels-redis layers,
    memory for any other (one process: see check ``django_sse.W040``)."""
    from django.conf import settings

    layer = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default") or {}
    backend = str(layer.get("BACKEND", ""))
    if backend.startswith("channels_redis."):
        url = redis_url(layer.get("CONFIG") or {})
        if url is not None:
            found = _redis.get(url)
            if found is None:
                found = _redis[url] = RedisPresence(url)
            return found
    return _memory


def member_json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
