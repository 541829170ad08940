"""The Redis limiter's server-side scripts: each runs atomically, so a check and its booking
cannot be split by another process, exactly as the memory limiter's synchronous `admit`.

Layout per key id K (the `{K}` hash tag keeps one key's state in one cluster slot):
  gw:{K}:r  sorted set, one member per admitted request, scored by admission time (RPM window)
  gw:{K}:t  sorted set, members `id|tokens`, scored by booking time (TPM window)
  gw:{K}:v  sorted set, members `id|worst cost`, scored by lease end (budget reservations in flight)
  gw:{K}:b  hash: tt (tokens in the TPM window), res (reserved USD), ds/d (UTC day start, its spend),
            ms/m (UTC month start, its spend), tot (lifetime spend)
  gw:epoch  set once the state was rebuilt from the ledger; every script refuses to run without it
Numbers written back go through `F` (17 significant digits): Lua's own tostring keeps only 14.
Times, limits and period starts come from the caller: Lua in Redis has no calendar, and tests
inject their clock.
"""
from __future__ import annotations

_COMMON = """
local function F(x) return string.format('%.17g', x) end
local function amount(member) return tonumber(string.match(member, '|([^|]*)$')) end
local function oldest(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first == 0 then return '' end
  return first[2]
end
"""

# KEYS: r t v b epoch
# ARGV: 1 now  2 edge (now - 60 s)  3 rpm limit  4 tpm limit  5 max budget  6 prompt tokens  7 worst cost
#       8 period  9 day start  10 month start  11 member  12 lease end  13 window ttl ms  14 lease ttl ms
# -> {-1} without epoch; else {status, epoch, rpm used, oldest r, tpm used, oldest t, deciding score}
#    status 1 admitted, 2 budget, 3 rpm, 4 tpm; the deciding score is the entry whose leaving makes room
ADMIT = _COMMON + """
local epoch = redis.call('GET', KEYS[5])
if not epoch then return {-1} end
local r, t, v, b = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, edge = ARGV[1], ARGV[2]
local h = redis.call('HMGET', b, 'tt', 'res', 'ds', 'd', 'ms', 'm', 'tot')
local tt, res = tonumber(h[1] or '0'), tonumber(h[2] or '0')
local ds, d, ms, m, tot = tonumber(h[3] or '-1'), tonumber(h[4] or '0'), tonumber(h[5] or '-1'),
                          tonumber(h[6] or '0'), tonumber(h[7] or '0')
redis.call('ZREMRANGEBYSCORE', r, '-inf', edge)
local gone = redis.call('ZRANGEBYSCORE', t, '-inf', edge)
if #gone > 0 then
  for _, e in ipairs(gone) do tt = tt - amount(e) end
  redis.call('ZREMRANGEBYSCORE', t, '-inf', edge)
end
if redis.call('ZCARD', t) == 0 then tt = 0 end
local stale = redis.call('ZRANGEBYSCORE', v, '-inf', now)
if #stale > 0 then
  for _, e in ipairs(stale) do res = res - amount(e) end
  redis.call('ZREMRANGEBYSCORE', v, '-inf', now)
end
if redis.call('ZCARD', v) == 0 then res = 0 end
local nds, nms = tonumber(ARGV[9]), tonumber(ARGV[10])
if nds > ds then ds = nds; d = 0 end
if nms > ms then ms = nms; m = 0 end
local spent = tot
if ARGV[8] == 'daily' then spent = d elseif ARGV[8] == 'monthly' then spent = m end
local rpm_used = redis.call('ZCARD', r)
local prompt, worst = tonumber(ARGV[6]), tonumber(ARGV[7])
local rpm_limit, tpm_limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local status, decide = 1, ''
if spent + res + worst > tonumber(ARGV[5]) + 1e-12 then
  status = 2
elseif rpm_used + 1 > rpm_limit then
  status = 3
  local nth = redis.call('ZRANGE', r, rpm_used - rpm_limit, rpm_used - rpm_limit, 'WITHSCORES')
  if #nth > 0 then decide = nth[2] end
elseif tt + prompt > tpm_limit then
  status = 4
  local excess, i = tt + prompt - tpm_limit, 0
  while decide == '' do
    local page = redis.call('ZRANGE', t, i, i + 99, 'WITHSCORES')
    if #page == 0 then break end
    for j = 1, #page, 2 do
      excess = excess - amount(page[j])
      if excess <= 0 then decide = page[j + 1]; break end
    end
    i = i + 100
  end
else
  local member = ARGV[11]
  redis.call('ZADD', r, now, member)
  redis.call('ZADD', t, now, member .. '|' .. ARGV[6])
  redis.call('ZADD', v, ARGV[12], member .. '|' .. ARGV[7])
  redis.call('PEXPIRE', r, ARGV[13])
  redis.call('PEXPIRE', t, ARGV[13])
  redis.call('PEXPIRE', v, ARGV[14])
  rpm_used, tt, res = rpm_used + 1, tt + prompt, res + worst
end
redis.call('HSET', b, 'tt', F(tt), 'res', F(res), 'ds', F(ds), 'd', F(d), 'ms', F(ms), 'm', F(m), 'tot', F(tot))
return {status, epoch, rpm_used, oldest(r), F(tt), oldest(t), decide}
"""

# KEYS: t v b epoch
# ARGV: 1 now  2 estimate member ('' for none)  3 real tokens  4 real cost  5 admitted day start
#       6 admitted month start  7 reservation member ('' for none)  8 admission epoch  9 replay (0/1)
#       10 day start now  11 month start now  12 request member  13 window ttl ms
# -> -1 without epoch; 0 skipped (a replay across a rebuild, which counted it from the ledger); 1 booked
SETTLE = _COMMON + """
local epoch = redis.call('GET', KEYS[4])
if not epoch then return -1 end
local same = epoch == ARGV[8]
if not same and ARGV[9] == '1' then return 0 end
local t, v, b = KEYS[1], KEYS[2], KEYS[3]
local h = redis.call('HMGET', b, 'tt', 'res', 'ds', 'd', 'ms', 'm', 'tot')
local tt, res = tonumber(h[1] or '0'), tonumber(h[2] or '0')
local ds, d, ms, m, tot = tonumber(h[3] or '-1'), tonumber(h[4] or '0'), tonumber(h[5] or '-1'),
                          tonumber(h[6] or '0'), tonumber(h[7] or '0')
if same and ARGV[2] ~= '' then
  local score = redis.call('ZSCORE', t, ARGV[2])
  if score then
    redis.call('ZREM', t, ARGV[2])
    tt = tt - amount(ARGV[2])
    redis.call('ZADD', t, score, ARGV[12] .. '|0')
  end
end
local tokens = tonumber(ARGV[3])
if tokens > 0 then
  redis.call('ZADD', t, ARGV[1], ARGV[12] .. '|s|' .. ARGV[3])
  tt = tt + tokens
end
redis.call('PEXPIRE', t, ARGV[13])
local nds, nms = tonumber(ARGV[10]), tonumber(ARGV[11])
if nds > ds then ds = nds; d = 0 end
if nms > ms then ms = nms; m = 0 end
if same and ARGV[7] ~= '' and redis.call('ZREM', v, ARGV[7]) == 1 then res = res - amount(ARGV[7]) end
if redis.call('ZCARD', v) == 0 then res = 0 end
local cost = tonumber(ARGV[4])
tot = tot + cost
if tonumber(ARGV[5]) == ds then d = d + cost end
if tonumber(ARGV[6]) == ms then m = m + cost end
redis.call('HSET', b, 'tt', F(tt), 'res', F(res), 'ds', F(ds), 'd', F(d), 'ms', F(ms), 'm', F(m), 'tot', F(tot))
return 1
"""

# KEYS: r t b ; ARGV: 1 edge -> {rpm used, tpm used, ds, d, ms, m, tot} (reads only)
USAGE = _COMMON + """
local edge = '(' .. ARGV[1]
local tpm = 0
for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], edge, '+inf')) do tpm = tpm + amount(e) end
local h = redis.call('HMGET', KEYS[3], 'ds', 'd', 'ms', 'm', 'tot')
return {redis.call('ZCOUNT', KEYS[1], edge, '+inf'), F(tpm), h[1] or '-1', h[2] or '0', h[3] or '-1',
        h[4] or '0', h[5] or '0'}
"""

# KEYS: epoch ; ARGV: 1 new epoch  2 JSON {ds, ms, budgets: {K: [day, month, total]}, recent: [[K, t, tokens]]}
#       3 window ttl ms
# Once only: when the epoch exists another process rebuilt first, and its epoch is returned. Whatever
# state is left without an epoch (keys evicted or deleted by hand) is stale and goes first.
REBUILD = _COMMON + """
local current = redis.call('GET', KEYS[1])
if current then return current end
local stale = redis.call('KEYS', 'gw:{*}:*')
for i = 1, #stale, 500 do
  redis.call('DEL', unpack(stale, i, math.min(i + 499, #stale)))
end
local data = cjson.decode(ARGV[2])
local ds, ms = F(data.ds), F(data.ms)
for key, spend in pairs(data.budgets) do
  redis.call('HSET', 'gw:{' .. key .. '}:b', 'ds', ds, 'd', F(spend[1]), 'ms', ms, 'm', F(spend[2]),
             'tot', F(spend[3]), 'res', '0', 'tt', '0')
end
local touched = {}
for i, e in ipairs(data.recent) do
  local prefix = 'gw:{' .. e[1] .. '}:'
  local at = F(e[2])
  redis.call('ZADD', prefix .. 'r', at, 'L' .. i)
  redis.call('ZADD', prefix .. 't', at, 'L' .. i .. '|' .. F(e[3]))
  redis.call('HINCRBYFLOAT', prefix .. 'b', 'tt', F(e[3]))
  touched[prefix] = true
end
for prefix in pairs(touched) do
  redis.call('PEXPIRE', prefix .. 'r', ARGV[3])
  redis.call('PEXPIRE', prefix .. 't', ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""
