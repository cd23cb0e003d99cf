"""The Lua scripts behind every multi-key atomic step.

Rules every script follows (checked by tests/store/test_cluster_safety.py, for every script
the store runs, on a single Redis and on a Redis Cluster):
- it touches only the keys passed in KEYS, and they all share one hash slot (no exceptions:
  see the rule in `keys.py`);
- steps of the relay are fenced: they do nothing unless KEYS[1] (the partition lease) holds the
  caller's owner id, so a worker whose lease lapsed cannot ack, hold or dead-letter anything
  after another worker took over;
- it validates before it writes, because Redis does not roll back a script that fails halfway.

Scripts are plain strings (Redis runs Lua 5.1); `RedisStore` registers each once and calls it
by EVALSHA, loading it again if the server forgot it.
"""

from __future__ import annotations

from typing import Final

# Shared helpers, prepended to the scripts that need them.
_FENCE = """
local function fenced(lease, owner) return redis.call('GET', lease) == owner end
"""

# Held entries are JSON `["<entry id>",...]`; entry ids are "<ms>-<seq>", so the quoted id is an
# exact, unambiguous prefix of its serialized entry.
_REMOVE_HELD = """
local function remove_held(list, entry_id)
  local head = '["' .. entry_id .. '"'
  for _, item in ipairs(redis.call('LRANGE', list, 0, -1)) do
    if string.sub(item, 1, #head) == head then
      redis.call('LREM', list, 1, item)
      return true
    end
  end
  return false
end
"""

# Redis's own clock in ms: the door's claim and its enqueue are timed by the server, never by
# the caller's clock.
_NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# A held claim `<state><digest>` (or `<state>:<hex SHA-256>`, the form before) judged against
# the body's digest (compact form) and its SHA-256 in hex: 'conflict' (another body), 'pending'
# or 'done'.
_JUDGE = """
local function judge(held, digest, hex)
  local body = string.sub(held, 2)
  if string.sub(held, 2, 2) == ':' and #held == #hex + 2 then body = string.sub(held, 3) end
  if body ~= digest and body ~= hex then return 'conflict' end
  if string.sub(held, 1, 1) == 'p' then return 'pending' end
  return 'done'
end
"""

# The webhook's dedupe decision for one 8x8 event id, whatever its partition: `hashes` are the
# claim hashes of the event id's shard, oldest bucket first (`keys.claim_buckets`); `legacy` the
# event id's claim in the form before (`Keys.event_claim`, single Redis only), or false. `field`,
# the body's `digest` (compact form), the `state` of a new claim ('p' or 'd'), the body's SHA-256
# in `hex`, which of `hashes` a new claim goes into (`current`: the caller's current bucket),
# when that bucket ends (ms), the TTL (ms). Returns 'new' (claimed now) | 'pending' (claimed with
# this body, not delivered yet: redo the enqueue) | 'done' (a duplicate) | 'conflict' (claimed
# with another body: a reused signature), and the server's time in ms. A new claim's hash is
# kept a TTL past the later of its bucket's end and Redis's clock (never shortened): at least
# the TTL, whatever the caller's clock. `find_claim` is the decision alone (the claim held, or
# nil), `write_claim` the new claim's write, for a script that writes it after its own step.
_CLAIM_EVENT = """
local function find_claim(hashes, legacy, field)
  local held = nil
  if legacy then held = redis.call('GET', legacy) end
  for i = 1, #hashes do
    if held then return held end
    held = redis.call('HGET', hashes[i], field)
  end
  return held
end

local function write_claim(key, field, claim, current_end, ttl, now)
  redis.call('HSET', key, field, claim)
  local expiry = math.max(current_end, now) + ttl
  local left = redis.call('PTTL', key)
  if left < 0 or now + left < expiry then
    redis.call('PEXPIREAT', key, string.format('%.0f', expiry))
  end
end

local function claim_event(hashes, legacy, field, digest, state, hex, current, current_end, ttl)
  local held = find_claim(hashes, legacy, field)
  local now = now_ms()
  if held then return judge(held, digest, hex), now end
  write_claim(hashes[current], field, state .. digest, current_end, ttl, now)
  return 'new', now
end

-- CLAIM_EVENT's KEYS and ARGV, at the front of the script's (a script may add its own after
-- them): the claim hashes, the legacy claim or false, and claim_event's other arguments.
local function claim_args_at_front()
  local n = tonumber(ARGV[8])
  local hashes = {}
  for i = 1, n do hashes[i] = KEYS[i] end
  return hashes, KEYS[n + 1] or false, ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]),
         tonumber(ARGV[6]), tonumber(ARGV[7])
end
"""

# KEYS: the claim hashes, then, on a single Redis only, the legacy claim. ARGV: field, digest,
# state of a new claim, hex, which of KEYS a new claim goes into, when that bucket ends (ms),
# the TTL (ms), how many hashes KEYS holds. `claim_event`'s answer: {state, server time (ms)}.
CLAIM_EVENT: Final = (
    _NOW_MS
    + _JUDGE
    + _CLAIM_EVENT
    + """
local state, now = claim_event(claim_args_at_front())
return {state, now}
"""
)

# KEYS and ARGV[1], ARGV[2] as CLAIM_EVENT's: the claim hashes, the legacy claim (single Redis),
# field, how many hashes. A pending claim becomes done (in whichever bucket, or form, it is),
# once its event was delivered: the relay's step, before it lets the enqueued marker go. The
# claim keeps its expiry. 1 if settled now. Newest bucket first: a claim being delivered was
# most often made moments ago, in the current bucket (the second newest).
SETTLE_EVENT: Final = """
local n = tonumber(ARGV[2])
for i = n, 1, -1 do
  local held = redis.call('HGET', KEYS[i], ARGV[1])
  if held then
    if string.sub(held, 1, 1) ~= 'p' then return 0 end
    redis.call('HSET', KEYS[i], ARGV[1], 'd' .. string.sub(held, 2))
    return 1
  end
end
if #KEYS == n then return 0 end
local held = redis.call('GET', KEYS[n + 1])
if not held or string.sub(held, 1, 1) ~= 'p' then return 0 end
redis.call('SET', KEYS[n + 1], 'd' .. string.sub(held, 2), 'KEEPTTL')
return 1
"""

# KEYS: enqueued marker, stream. ARGV: event id, payload, ttl (s), when the caller's claim was
# read (server ms; '' for none), the most that may have passed since (ms), the relays' doorbell
# channel ('' for none) and the partition to ring it with.
# Append the event unless this partition has it already (0): the enqueue step after a claim,
# idempotent so that redoing it after a crash cannot double the event. A delivered event's marker
# outlives its delivery only briefly (`let_go` below), so an enqueue that comes too long after
# its claim was read is refused (-1, nothing written): it may be a delayed retry of an event
# delivered and let go meanwhile. Such an entry is marked `c` (claimed): its delivery settles the
# claim and lets the marker go. XADD comes before SET so that a failure leaves no marker. The
# doorbell (a pub/sub message, not a key) wakes the partition's consumer in another process.
# Appended: the new entry's id and the id of the stream's last entry before it ('' for none),
# which tells this process's consumer whether it has read everything that comes before the
# entry (bridge/relay/handed.py). `append` is the append alone: `claimed` marks the entry `c`.
_ENQUEUE = """
local function append(stream, eid, payload, claimed, bell, p)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  local after = last[1] and last[1][1] or ''
  local id
  if claimed then
    id = redis.call('XADD', stream, '*', 'eid', eid, 'ev', payload, 'c', '1')
  else
    id = redis.call('XADD', stream, '*', 'eid', eid, 'ev', payload)
  end
  if bell ~= '' then redis.call('PUBLISH', bell, p) end
  return {id, after}
end

local function enqueue(marker, stream, eid, payload, ttl, since, most, bell, p)
  if redis.call('EXISTS', marker) == 1 then return 0 end
  if since ~= '' and now_ms() - tonumber(since) > tonumber(most) then return -1 end
  local added = append(stream, eid, payload, since ~= '', bell, p)
  redis.call('SET', marker, '1', 'EX', ttl)
  return added
end
"""

ENQUEUE_EVENT: Final = (
    _NOW_MS
    + _ENQUEUE
    + """
return enqueue(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
"""
)

# A delivered event's enqueued marker, kept only `ms` longer (never lengthened): long enough for
# any enqueue that read its claim before the delivery settled it (ENQUEUE_EVENT's limit, plus
# clock skew between Cluster nodes), after which the settled claim alone answers duplicates.
_LET_GO = """
local function let_go(marker, ms)
  local left = redis.call('PTTL', marker)
  if left > tonumber(ms) then redis.call('PEXPIRE', marker, ms) end
end
"""

# KEYS: lease. ARGV: owner, ttl (ms). Take the lease if free (1), renew it if ours (2); else 0.
ACQUIRE_LEASE: Final = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 2
end
return 0
"""

# KEYS: lease. ARGV: token. Compare-and-delete: a holder whose lease lapsed (and was taken by
# someone else) must not release the new holder's lease.
RELEASE_LEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: partition lease, stream, attempts[, enqueued marker]. ARGV: owner, entry id[, how long
# the marker may outlive the delivery (ms)].
ACK_EVENT: Final = (
    _FENCE
    + _LET_GO
    + """
if not fenced(KEYS[1], ARGV[1]) then return 0 end
redis.call('XDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if KEYS[4] then let_go(KEYS[4], ARGV[3]) end
return 1
"""
)

# KEYS: partition lease, stream, attempts, dead. ARGV: owner, entry id, event id, payload,
# reason. An entry no longer in the stream (acked meanwhile) is not dead-lettered twice.
DEAD_LETTER_FROM_STREAM: Final = (
    _FENCE
    + """
if not fenced(KEYS[1], ARGV[1]) then return 0 end
if redis.call('XDEL', KEYS[2], ARGV[2]) == 1 then
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[2], 'eid', ARGV[3], 'ev', ARGV[4], 'why', ARGV[5])
end
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
"""
)

# KEYS: partition lease, hold list, held set, held index, attempts, dead.
# ARGV: owner, entry id, event id, payload, reason, conversation.
DEAD_LETTER_FROM_HOLD: Final = (
    _FENCE
    + _REMOVE_HELD
    + """
if not fenced(KEYS[1], ARGV[1]) then return 0 end
if remove_held(KEYS[2], ARGV[2]) then
  redis.call('XADD', KEYS[6], '*', 'id', ARGV[2], 'eid', ARGV[3], 'ev', ARGV[4], 'why', ARGV[5])
end
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[2])
if redis.call('LLEN', KEYS[2]) == 0 then redis.call('ZREM', KEYS[3], ARGV[6]) end
return 1
"""
)

# KEYS: dead, stream. ARGV: dead id. Back to the end of the stream, and out of the dead letters.
REPLAY_DEAD_LETTER: Final = """
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return 0 end
local flat = found[1][2]
local fields = {}
for i = 1, #flat, 2 do fields[flat[i]] = flat[i + 1] end
local new_id = redis.call('XADD', KEYS[2], '*', 'eid', fields['eid'], 'ev', fields['ev'])
-- Counted as attempted once: its push may have landed before it was given up, so the relay
-- looks in the tracker before pushing it again.
redis.call('HSET', KEYS[3], new_id, 1)
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
"""

# KEYS: partition lease, stream, hold list, held set, held index.
# ARGV: owner, entry id, serialized entry, conversation, deadline (ms).
# Only an entry still in the stream is moved (so a repeated call cannot hold it twice); the
# first held entry of a conversation sets its deadline (ZADD NX).
HOLD_EVENT: Final = (
    _FENCE
    + """
if not fenced(KEYS[1], ARGV[1]) then return 0 end
if redis.call('XDEL', KEYS[2], ARGV[2]) == 0 then return 1 end
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], 'NX', ARGV[5], ARGV[4])
redis.call('HSET', KEYS[5], ARGV[2], ARGV[4])
return 1
"""
)

# KEYS: partition lease, hold list, held set, held index, attempts.
# ARGV: owner, entry id, conversation. The conversation leaves the held set with its last entry.
UNHOLD_EVENT: Final = (
    _FENCE
    + _REMOVE_HELD
    + """
if not fenced(KEYS[1], ARGV[1]) then return 0 end
remove_held(KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[2])
if redis.call('LLEN', KEYS[2]) == 0 then redis.call('ZREM', KEYS[3], ARGV[3]) end
return 1
"""
)

# KEYS: record. ARGV: expected version, ttl (ms), version field, conversation field, state field,
# refreshed field, the current period (a UTC day), then field name/value pairs. Compare-and-set on
# the version; `conversation_id` survives unless given. Returns {1, conversation id or '', 1 when
# what lives beside the record (its conversation's mapping, the live index) must be refreshed:
# its state changed, or its first write of the period} when written, {0, '', 0} when the version
# did not match. A handoff's many writes that only note the time (an agent's each word) then cost
# one round trip, not three.
SAVE_HANDOFF: Final = """
local unpack = unpack or table.unpack
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[3]) or '0')
if current ~= tonumber(ARGV[1]) then return {0, '', 0} end
local before = redis.call('HMGET', KEYS[1], ARGV[4], ARGV[5], ARGV[6])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[3], tostring(current + 1), unpack(ARGV, 8))
if before[1] and redis.call('HEXISTS', KEYS[1], ARGV[4]) == 0 then
  redis.call('HSET', KEYS[1], ARGV[4], before[1])
end
redis.call('HSET', KEYS[1], ARGV[6], ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local refresh = 0
if before[2] ~= redis.call('HGET', KEYS[1], ARGV[5]) or before[3] ~= ARGV[7] then refresh = 1 end
return {1, redis.call('HGET', KEYS[1], ARGV[4]) or '', refresh}
"""

# KEYS: the sender's shard of the live-handoff index, the index's unsharded key (earlier
# versions': bridge/store/live_index.py). ARGV: sender, 1 when live, the entry's lapse time (ms),
# the shard's TTL (ms). An entry in the shard for a live record, none for the others; never one in
# the unsharded key, which so drains as handoffs change state.
LIVE_UPDATE: Final = """
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: every key of the live-handoff index (`Keys.live_index`). ARGV: now (ms), limit, the
# union's threshold (below).
# Drops every key's lapsed entries, then returns the first `limit` senders of all the keys
# together, by score then sender (each ZSET's own order), each sender once at its oldest entry
# (while earlier versions still write the unsharded key, a sender may be in it and in its shard
# too). Two ways, the same answer: when the index holds at most `threshold` x `limit` entries,
# ZUNION (AGGREGATE MIN) sorts them all in Redis's C, about 0.6 us an entry; else a merge of the
# keys' ranges through a binary heap of each key's next entry, each key read a page at a time
# (8 entries more than its even share of `limit`), which costs about 2.4 us per sender listed
# (Redis 7.0 on the bench machine): a short list out of many entries.
LIVE_READ: Final = """
local unpack = unpack or table.unpack
local now, limit, threshold = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local total = 0
for k = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
  total = total + redis.call('ZCARD', KEYS[k])
end
local out, seen = {}, {}
if total <= threshold * limit then
  local union = {'ZUNION', #KEYS, unpack(KEYS)}
  union[#union + 1] = 'AGGREGATE'
  union[#union + 1] = 'MIN'
  local all = redis.call(unpack(union))
  for i = 1, math.min(limit, #all) do out[i] = all[i] end
  return out
end
local page = math.ceil(limit / #KEYS) + 8
local function before(a, b)
  if a.score ~= b.score then return a.score < b.score end
  return a.member < b.member
end
-- A key's cursor moves to its next entry (reading the next page when its page is spent);
-- false past the key's last entry.
local function advance(c)
  if c.at > #c.flat then
    c.rank = c.rank + #c.flat / 2
    c.flat = redis.call('ZRANGE', KEYS[c.key], c.rank, c.rank + page - 1, 'WITHSCORES')
    c.at = 1
    if #c.flat == 0 then return false end
  end
  c.member, c.score = c.flat[c.at], tonumber(c.flat[c.at + 1])
  c.at = c.at + 2
  return true
end
local heap = {}
local function push(c)
  heap[#heap + 1] = c
  local i = #heap
  while i > 1 and before(heap[i], heap[math.floor(i / 2)]) do
    local up = math.floor(i / 2)
    heap[i], heap[up] = heap[up], heap[i]
    i = up
  end
end
local function pop()
  local top = heap[1]
  heap[1] = heap[#heap]
  heap[#heap] = nil
  local i = 1
  while true do
    local least, left, right = i, 2 * i, 2 * i + 1
    if heap[left] and before(heap[left], heap[least]) then least = left end
    if heap[right] and before(heap[right], heap[least]) then least = right end
    if least == i then return top end
    heap[i], heap[least] = heap[least], heap[i]
    i = least
  end
end
for k = 1, #KEYS do
  local c = {key = k, flat = {}, at = 1, rank = 0}
  if advance(c) then push(c) end
end
while #out < limit and #heap > 0 do
  local c = pop()
  if not seen[c.member] then
    seen[c.member] = true
    out[#out + 1] = c.member
  end
  if advance(c) then push(c) end
end
return out
"""

# KEYS: record. ARGV: conversation, ttl (ms), version field, conversation field.
# The commit step of `link`: the record names the conversation. The version bump makes a
# concurrent CAS writer that loaded the record before the link retry on top of it.
LINK_RECORD: Final = """
redis.call('HSET', KEYS[1], ARGV[4], ARGV[1])
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: outbox, fence. ARGV: item, ttl (ms), the fence as read before the push indexed itself.
# Appends and returns the new length; -1 (nothing written) if the fence moved meanwhile: the
# index may have forgotten this sender after the push's index write, so the push starts over.
OUTBOX_PUSH: Final = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[3] then return -1 end
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n
"""

# KEYS: outbox, fence. ARGV: ttl (ms). Before the index forgets a sender: 0 if its outbox is not
# empty (keep it); else move the fence, so that no push begun earlier can still append, and 1.
OUTBOX_FENCE: Final = """
if redis.call('LLEN', KEYS[1]) > 0 then return 0 end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""

# KEYS: hash. ARGV: field, value. Compare-and-delete of one field: 1 if deleted.
FORGET_IF_UNCHANGED: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS: outbox. ARGV: item. Pop the head only if it is still `item` (another drainer may have
# popped it already); returns the length left.
OUTBOX_POP: Final = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) end
return redis.call('LLEN', KEYS[1])
"""

# KEYS: live relays (ZSET, score = when the member lapses, ms). ARGV: owner, ttl (ms).
# Returns how many relays are alive, this one included. Redis's clock, so processes on
# machines with skewed clocks agree.
RELAY_HEARTBEAT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10) end
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: partition lease, stream, then the partition's timer sets (`Keys.timer_sets`). ARGV:
# owner, now (ms), most to fire, event id prefix.
# Fenced like the relay's other steps: only the lease holder fires, so a timer fires once, and
# into the stream, behind whatever 8x8 event of its conversation was accepted before it.
# The sets are merged by due time (then member), so the partition's timers fire in due order
# whichever shard holds them: each set's earliest due member is its head, the earliest head
# fires and that set's next due member becomes its head. A backlog (timers overdue after an
# outage) thus costs a few commands per timer fired, not a read of `most` from every set.
# A member `<kind code>|<since_ms>|<conversation>` (bridge/store/timers.py) names no arming, so
# the entry gets its due time: payload `<due>|<member>`, event id `<prefix><due>|<code>|<since>`
# (unique per arming, so pushes it causes carry their own markers). The due is printed with
# '%.0f': plain digits whatever notation the score comes in (tostring and cjson keep only 14
# significant digits). Any other member (the JSON of earlier versions) fires verbatim:
# payload = member, event id = prefix .. member.
FIRE_TIMERS: Final = (
    _FENCE
    + """
if not fenced(KEYS[1], ARGV[1]) then return 0 end
local heads = {}
local function head(k)
  local found = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, 1)
  heads[k] = found[1] and {tonumber(found[2]), found[1]} or false
end
local function earliest()
  local best = nil
  for k = 3, #KEYS do
    local h, b = heads[k], best and heads[best]
    if h and (not b or h[1] < b[1] or (h[1] == b[1] and h[2] < b[2])) then best = k end
  end
  return best
end
for k = 3, #KEYS do head(k) end
local fired = 0
while fired < tonumber(ARGV[3]) do
  local k = earliest()
  if not k then break end
  local at, timer = heads[k][1], heads[k][2]
  local eid, ev = ARGV[4] .. timer, timer
  local kind_since = string.match(timer, '^([a-z]|%d+)|')
  if kind_since then
    at = string.format('%.0f', at)
    eid, ev = ARGV[4] .. at .. '|' .. kind_since, at .. '|' .. timer
  end
  redis.call('ZREM', KEYS[k], timer)
  redis.call('XADD', KEYS[2], '*', 'eid', eid, 'ev', ev)
  fired = fired + 1
  head(k)
end
return fired
"""
)

# --- agent messages and their identity (bridge/relay/identity.py) ---
# The conversation's `delivered` hash: field `<digest>:<ordinal>` is the owning event id while
# that entry is being delivered (or waits in the dead letters), `d` once delivered; field
# `e:<event id>` is the ordinal an event took, so a retry, a take-over or a replay of the same
# event finds the same one.

_CLAIM = """
local function claim(key, digest, eid, k, ttl)
  if k == 0 then
    k = tonumber(redis.call('HGET', key, 'e:' .. eid) or '0')
    if k == 0 then
      k = 1
      while redis.call('HEXISTS', key, digest .. ':' .. k) == 1 do k = k + 1 end
    end
  end
  local field = digest .. ':' .. k
  local holder = redis.call('HGET', key, field)
  if holder == 'd' then return k, 'delivered' end
  if holder and holder ~= eid then return k, 'other' end
  redis.call('HSET', key, field, eid, 'e:' .. eid, k)
  redis.call('PEXPIRE', key, ttl)
  return k, 'mine'
end
"""

# KEYS: partition lease, delivered. ARGV: owner, digest, event id, ordinal (0: the event's own,
# else the lowest free one), ttl (ms). Returns {ordinal, 'mine' | 'delivered' | 'other'} ('other':
# another entry owns that message), or {0, 'lost'} when fenced out.
CLAIM_MESSAGE: Final = (
    _FENCE
    + _CLAIM
    + """
if not fenced(KEYS[1], ARGV[1]) then return {0, 'lost'} end
local k, state = claim(KEYS[2], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5])
return {k, state}
"""
)

# KEYS: partition lease, delivered, attempts. ARGV: as CLAIM_MESSAGE's, then the entry id.
# CLAIM_MESSAGE and, when the message is this entry's to deliver, the attempt counted (as
# `note_attempt`): the relay's first step per agent message in one round trip. Returns
# {ordinal, claim, attempts} (attempts 0 unless 'mine').
_BEGIN = """
local function begin(lease, delivered, attempts, owner, digest, eid, k, ttl, entry_id)
  if not fenced(lease, owner) then return 0, 'lost', 0 end
  local ordinal, state = claim(delivered, digest, eid, k, ttl)
  if state ~= 'mine' then return ordinal, state, 0 end
  return ordinal, state, redis.call('HINCRBY', attempts, entry_id, 1)
end
"""

CLAIM_AND_BEGIN: Final = (
    _FENCE
    + _CLAIM
    + _BEGIN
    + """
local k, state, attempts = begin(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3],
                                 tonumber(ARGV[4]), ARGV[5], ARGV[6])
return {k, state, attempts}
"""
)

# Whether stream id `id` is at or before `bound` ("<ms>-<seq>" both; false for a bound of '').
_AT_OR_BEFORE = """
local function at_or_before(id, bound)
  if bound == '' then return false end
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  local bound_ms, bound_seq = string.match(bound, '^(%d+)-(%d+)$')
  ms, bound_ms = tonumber(ms), tonumber(bound_ms)
  return ms < bound_ms or (ms == bound_ms and tonumber(seq) <= tonumber(bound_seq))
end
"""

# After `enqueue`'s answer `added`: when it appended right after what the consumer has read (the
# stream's last entry before it at or before `frontier`, or none), CLAIM_AND_BEGIN for the new
# entry. Identities are claimed in stream order: an unread entry before this one (recovery's,
# another process's) claims first, so then the step is not taken. The enqueue does not depend on
# the step (a fenced-out step still appends). Returns `added`, with CLAIM_AND_BEGIN's three
# after the two ids when the step was taken.
_BEGIN_AFTER = """
local function begin_after(added, lease, delivered, attempts, owner, digest, eid, k, ttl,
                           frontier)
  if type(added) ~= 'table' then return added end
  if added[2] ~= '' and not at_or_before(added[2], frontier) then return added end
  local ordinal, state, n = begin(lease, delivered, attempts, owner, digest, eid, k, ttl,
                                  added[1])
  return {added[1], added[2], ordinal, state, n}
end
"""

# KEYS: ENQUEUE_EVENT's (enqueued marker, stream), then CLAIM_AND_BEGIN's (partition lease,
# delivered, attempts): all of the partition's slot. ARGV: ENQUEUE_EVENT's seven, then owner,
# digest, ordinal, ttl (ms), the consumer's frontier ('' for none).
# ENQUEUE_EVENT and, when it appended right after the consumer's frontier, CLAIM_AND_BEGIN for
# the new entry (`begin_after`): the door's enqueue and the relay's first step in one round
# trip, for an entry handed to this process's resting consumer.
# The functions of an enqueue that may take the relay's first step (after _NOW_MS).
_ENQUEUE_THEN_BEGIN = _FENCE + _CLAIM + _ENQUEUE + _BEGIN + _AT_OR_BEFORE + _BEGIN_AFTER

ENQUEUE_AND_BEGIN: Final = (
    _NOW_MS
    + _ENQUEUE_THEN_BEGIN
    + """
local added = enqueue(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
                      ARGV[7])
return begin_after(added, KEYS[3], KEYS[4], KEYS[5], ARGV[8], ARGV[9], ARGV[1],
                   tonumber(ARGV[10]), ARGV[11], ARGV[12])
"""
)

# Single Redis only (`keys.SINGLE_REDIS_JOINED`): the door's claim and its enqueue (and, asked,
# the relay's first step) in one round trip, which on a Cluster are CLAIM_EVENT then
# ENQUEUE_EVENT or ENQUEUE_AND_BEGIN (`RedisStore.admit_event`). The claim's slot and the
# partition's are two, which one server does not mind.
# A new claim is written done ('d') and its event appended plainly: nothing can come between
# this claim and its append, so there is no step for a pending claim and an enqueued marker to
# guard, and nothing for the delivery to settle. A pending claim found (written by the two
# steps of an earlier version) is enqueued as ENQUEUE_EVENT does, behind its marker.
# KEYS: CLAIM_EVENT's (the n claim hashes, the legacy claim), then ENQUEUE_EVENT's (enqueued
# marker, stream)[, then CLAIM_AND_BEGIN's (partition lease, delivered, attempts)].
# ARGV: CLAIM_EVENT's eight (a new claim 'd'), then event id, payload, ttl (s), the most that may
# pass from claim to append (ms), doorbell, partition[, then owner, digest, ordinal, ttl (ms),
# frontier]. Returns {claim state, server time, added}: `added` as ENQUEUE_AND_BEGIN's (or
# ENQUEUE_EVENT's, without the step), 0 when the claim says not to enqueue (done, conflict).
ADMIT_EVENT: Final = (
    _NOW_MS
    + _JUDGE
    + _CLAIM_EVENT
    + _ENQUEUE_THEN_BEGIN
    + """
local hashes, legacy, field, digest, state, hex, current, current_end, ttl = claim_args_at_front()
local n = #hashes
local held = find_claim(hashes, legacy, field)
local now = now_ms()
local found = held and judge(held, digest, hex) or 'new'
if found ~= 'new' and found ~= 'pending' then return {found, now, 0} end
local added
if found == 'new' then
  -- The append first: a script that fails halfway is not rolled back, and a claim written
  -- done with no entry would lose the event to every retry.
  added = append(KEYS[n + 3], ARGV[9], ARGV[10], false, ARGV[13], ARGV[14])
  write_claim(hashes[current], field, state .. digest, current_end, ttl, now)
else
  added = enqueue(KEYS[n + 2], KEYS[n + 3], ARGV[9], ARGV[10], ARGV[11], now, ARGV[12],
                  ARGV[13], ARGV[14])
end
if #KEYS > n + 3 then
  added = begin_after(added, KEYS[n + 4], KEYS[n + 5], KEYS[n + 6], ARGV[15], ARGV[16],
                      ARGV[9], tonumber(ARGV[17]), ARGV[18], ARGV[19])
end
return {found, now, added}
"""
)

_RECORD_MESSAGE = """
local function record_message(key, digest, ordinal, ttl)
  redis.call('HSET', key, digest .. ':' .. ordinal, 'd')
  redis.call('PEXPIRE', key, ttl)
end
"""

# KEYS: partition lease, stream, attempts, delivered[, enqueued marker]. ARGV: owner, entry id,
# digest, ordinal, ttl (ms)[, event id[, how long the marker may outlive the delivery (ms)]].
# The ack of an agent message: out of the stream and recorded as delivered in one step, so no
# path can see it both gone and undelivered. The event's ordinal (`e:<event id>`) is forgotten
# with its entry: only the entry itself (a retry, a take-over, a replay) ever looked it up. The
# marker is there when the webhook's claim of the event waits for the delivery. 0 when fenced
# out.
ACK_MESSAGE: Final = (
    _FENCE
    + _RECORD_MESSAGE
    + _LET_GO
    + """
if not fenced(KEYS[1], ARGV[1]) then return 0 end
redis.call('XDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
record_message(KEYS[4], ARGV[3], ARGV[4], ARGV[5])
if ARGV[6] then redis.call('HDEL', KEYS[4], 'e:' .. ARGV[6]) end
if KEYS[5] then let_go(KEYS[5], ARGV[7]) end
return 1
"""
)

# KEYS: partition lease, delivered, attempts. ARGV: owner, ttl (ms), then for each message of a
# run of one conversation, in stream order: digest, event id, ordinal, entry id.
# CLAIM_AND_BEGIN for each message in turn (each claim sees the ones before it, as one at a time
# would): the relay's first step for a run. Returns {ordinal, claim, attempts} per message, or
# {0, 'lost', 0} once when fenced out (nothing claimed, nothing counted).
CLAIM_AND_BEGIN_RUN: Final = (
    _FENCE
    + _CLAIM
    + """
if not fenced(KEYS[1], ARGV[1]) then return {0, 'lost', 0} end
local out = {}
for i = 3, #ARGV, 4 do
  local k, state = claim(KEYS[2], ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[2])
  local attempts = 0
  if state == 'mine' then attempts = redis.call('HINCRBY', KEYS[3], ARGV[i + 3], 1) end
  out[#out + 1] = k
  out[#out + 1] = state
  out[#out + 1] = attempts
end
return out
"""
)

# KEYS: partition lease, stream, attempts, delivered, then the enqueued marker of each message
# whose webhook claim waits for the delivery, in the messages' order. ARGV: owner, ttl (ms), how
# long a marker may outlive the delivery (ms), then for each message of a run of one
# conversation: entry id, digest, ordinal, event id ('' for none), '1' when its marker is among
# KEYS (else ''). ACK_MESSAGE for every message of the run behind one lease check: all of them
# or, fenced out (0), none.
ACK_MESSAGES: Final = (
    _FENCE
    + _RECORD_MESSAGE
    + _LET_GO
    + """
if not fenced(KEYS[1], ARGV[1]) then return 0 end
local marker = 4
for i = 4, #ARGV, 5 do
  redis.call('XDEL', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
  record_message(KEYS[4], ARGV[i + 1], ARGV[i + 2], ARGV[2])
  if ARGV[i + 3] ~= '' then redis.call('HDEL', KEYS[4], 'e:' .. ARGV[i + 3]) end
  if ARGV[i + 4] ~= '' then
    marker = marker + 1
    let_go(KEYS[marker], ARGV[3])
  end
end
return 1
"""
)

# KEYS: partition lease, hold list, held set, held index, attempts, delivered.
# ARGV: owner, entry id, conversation, digest, ordinal, ttl (ms). `unhold_event` and the record.
UNHOLD_MESSAGE: Final = (
    _FENCE
    + _REMOVE_HELD
    + _RECORD_MESSAGE
    + """
if not fenced(KEYS[1], ARGV[1]) then return 0 end
remove_held(KEYS[2], ARGV[2])
record_message(KEYS[6], ARGV[4], ARGV[5], ARGV[6])
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[2])
if redis.call('LLEN', KEYS[2]) == 0 then redis.call('ZREM', KEYS[3], ARGV[3]) end
return 1
"""
)

# KEYS: a partition's timer set. ARGV: n, then n (due, member) pairs armed, then (member, due)
# pairs disarmed, other members than those armed: each goes only while at that due time (a
# later arming of the same kind and handoff moved it: that one is kept).
CHANGE_TIMERS: Final = """
local n = tonumber(ARGV[1])
for i = 2, 2 * n, 2 do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 2 * n + 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 1
"""

ALL: Final = {
    "relay_heartbeat": RELAY_HEARTBEAT,
    "claim_event": CLAIM_EVENT,
    "settle_event": SETTLE_EVENT,
    "enqueue_event": ENQUEUE_EVENT,
    "enqueue_and_begin": ENQUEUE_AND_BEGIN,
    "admit_event": ADMIT_EVENT,
    "acquire_lease": ACQUIRE_LEASE,
    "release_lease": RELEASE_LEASE,
    "ack_event": ACK_EVENT,
    "dead_letter_from_stream": DEAD_LETTER_FROM_STREAM,
    "dead_letter_from_hold": DEAD_LETTER_FROM_HOLD,
    "replay_dead_letter": REPLAY_DEAD_LETTER,
    "hold_event": HOLD_EVENT,
    "unhold_event": UNHOLD_EVENT,
    "save_handoff": SAVE_HANDOFF,
    "live_update": LIVE_UPDATE,
    "live_read": LIVE_READ,
    "outbox_pop": OUTBOX_POP,
    "link_record": LINK_RECORD,
    "outbox_push": OUTBOX_PUSH,
    "outbox_fence": OUTBOX_FENCE,
    "forget_if_unchanged": FORGET_IF_UNCHANGED,
    "fire_timers": FIRE_TIMERS,
    "change_timers": CHANGE_TIMERS,
    "claim_message": CLAIM_MESSAGE,
    "claim_and_begin": CLAIM_AND_BEGIN,
    "ack_message": ACK_MESSAGE,
    "unhold_message": UNHOLD_MESSAGE,
    "claim_and_begin_run": CLAIM_AND_BEGIN_RUN,
    "ack_messages": ACK_MESSAGES,
}
