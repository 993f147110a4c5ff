//! The Lua scripts that make each step of the queue one atomic operation on the server.
//!
//! Keys of a job `J` (all with the hash tag `{J}`): `{J}:q` the stream of queued files (group `workers`), `{J}:queued` output name →
//! stream entry of each file queued or held, `{J}:names` every name ever offered,
//! `{J}:journal` name → latest journal record, `{J}:final` name → the last final state and
//! the identity of the input it was reached for, `{J}:log` every final record in order,
//! `{J}:counts` files done / failed, `{J}:sem` the request slots held (sorted by expiry).

/// Offers names: `KEYS` = q, queued, names; `ARGV` = the names. Returns how many were added.
pub const OFFER: &str = r#"
local added = 0
for _, name in ipairs(ARGV) do
  redis.call('SADD', KEYS[3], name)
  if redis.call('HEXISTS', KEYS[2], name) == 0 then
    local id = redis.call('XADD', KEYS[1], '*', 'name', name)
    redis.call('HSET', KEYS[2], name, id)
    added = added + 1
  end
end
return added
"#;

/// Takes a file: first one whose holder's lease expired (so that a dead worker's files,
/// async uploads included, resume promptly), else a new entry. `KEYS` = q; `ARGV` = group,
/// consumer, lease in ms. Returns `{'claimed'|'new', id, name, deliveries}`, or `{'wait', n}`
/// with `n` the files held by other consumers (0: the job is drained for this consumer).
pub const TAKE: &str = r#"
local cursor = '0-0'
repeat
  local c = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', 1)
  if c[2][1] and c[2][1][2] then
    local e = c[2][1]
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    local n = 1
    if p[1] then n = p[1][4] end
    return {'claimed', e[1], e[2][2], tostring(n)}
  end
  cursor = c[1]
until cursor == '0-0'
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
if r and r[1] and r[1][2][1] then
  local e = r[1][2][1]
  return {'new', e[1], e[2][2], '1'}
end
local p = redis.call('XPENDING', KEYS[1], ARGV[1])
local others = p[1]
if p[4] then
  for _, held in ipairs(p[4]) do
    if held[1] == ARGV[2] then others = others - tonumber(held[2]) end
  end
end
return {'wait', tostring(others)}
"#;

/// Hands a file back at once (this worker stops without it): its idle time is set to the
/// lease, so the next worker that looks takes it. `KEYS` = q; `ARGV` = group, consumer, id,
/// lease in ms. Returns 1 when handed back, 0 when this consumer no longer held it.
pub const RELEASE: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
return 1
"#;

/// Renews a lease if this consumer still holds the entry. `KEYS` = q; `ARGV` = group,
/// consumer, id. Returns 1 when renewed, 0 when another consumer holds it or it is gone.
pub const RENEW: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"#;

/// Hands back every entry a consumer holds (its run was cancelled). `KEYS` = q; `ARGV` =
/// group, consumer, lease in ms. Returns how many.
pub const ABANDON: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 10000, ARGV[2])
for _, e in ipairs(p) do
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, e[1], 'IDLE', ARGV[3], 'JUSTID')
end
return #p
"#;

/// Finishes an entry. `KEYS` = q, queued; `ARGV` = group, id, name.
pub const FINISH: &str = r#"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[3])
end
return 1
"#;

/// Appends a journal record. `KEYS` = journal, final, log, counts; `ARGV` = name, record,
/// state, identity (input key and settings). A final state (`done`, `failed`) reached again
/// for the same identity becomes the latest record but is not logged or counted twice; a file done for an identity keeps
/// that record as its latest when a second worker (whose lease had expired) starts it again.
/// Returns 1 when recorded, 0 when it was already.
pub const APPEND: &str = r#"
local prev = redis.call('HGET', KEYS[2], ARGV[1])
local final = ARGV[3] == 'done' or ARGV[3] == 'failed'
local now = ARGV[3] .. '\n' .. ARGV[4]
if prev == now then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 0
end
if prev == 'done\n' .. ARGV[4] then return -1 end
if not final then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if prev then
  local was = string.match(prev, '^(%a+)\n')
  if was then redis.call('HINCRBY', KEYS[4], was, -1) end
end
redis.call('HSET', KEYS[2], ARGV[1], now)
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
redis.call('RPUSH', KEYS[3], ARGV[2])
return 1
"#;

/// Takes a request slot. `KEYS` = sem; `ARGV` = limit, slot id, lifetime in ms. Returns 1
/// when taken. Slots of dead workers expire.
pub const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  return 1
end
return 0
"#;

/// Extends the slots still held. `KEYS` = sem; `ARGV` = lifetime in ms, slot ids.
pub const EXTEND: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
end
return 1
"#;
