-- open_counts.lua: the open-session counters of a partition (ocs:open:{P}, a HASH),
-- kept by ccr.lua and settle.lua in the same atomic call that changes a session, so
-- that sampling the open sessions and their reservations is one HGETALL per partition
-- (quota_engine/store/open_counts.py), never a walk over the sessions.
--
-- Not a script of its own: included after lib.lua (it uses fmt_int).
--
-- Fields, for each service class C of OPEN_SERVICES ("data", "voice", "sms", "other"):
--   C:sessions   open sessions whose Service-Context-Id is of class C
--   C:money      micro-units reserved by their open grants (the rm entries)
--   C:<unit>     units granted and not yet reported (R.g), unit octets, seconds or events
-- All integers (HINCRBY); a field at 0 stays.
--
-- A session counts once it carries S.cm = 1, which the first write by this version
-- sets: a script subtracts a session's contribution only if it carries the mark, so
-- sessions opened before the counters existed are counted from their next request on
-- and never subtracted without having been added.

local OPEN_SERVICES = {
  ['32251@3gpp.org'] = 'data',
  ['32260@3gpp.org'] = 'voice',
  ['32275@3gpp.org'] = 'voice',
  ['32274@3gpp.org'] = 'sms',
}
-- class -> its field names, in the order of an open_counts entry (below)
local OPEN_FIELDS = {}
for _, class in ipairs({ 'data', 'voice', 'sms', 'other' }) do
  OPEN_FIELDS[class] = {
    class .. ':sessions', class .. ':money', class .. ':octets', class .. ':seconds',
    class .. ':events',
  }
end
local OPEN_UNIT_SLOT = { octets = 4, seconds = 5, events = 6 }

-- What the session S adds to the counters: { fields of its class, sessions (1), money,
-- octets, seconds, events } (no string is built per call: this runs twice per CCR).
local function open_counts(S)
  local ctx, class = S.ctx, nil
  if type(ctx) == 'string' then
    class = OPEN_SERVICES[ctx] or OPEN_SERVICES[string.lower(ctx)]
  end
  local c = { OPEN_FIELDS[class or 'other'], 1, 0, 0, 0, 0 }
  for _, R in pairs(S.rgs or {}) do
    if type(R) == 'table' then
      for _, e in ipairs(R.rm or {}) do
        c[3] = c[3] + (tonumber(e[2]) or 0)
      end
      local g, slot = tonumber(R.g) or 0, OPEN_UNIT_SLOT[R.unit]
      if g > 0 and slot then
        c[slot] = c[slot] + g
      end
    end
  end
  return c
end

-- Move the counters of `key` from `before` to `after` (open_counts entries, or nil
-- for no contribution): one HINCRBY per field that changed.
local function count_open(key, before, after)
  if before and after and before[1] == after[1] then
    local fields = after[1]
    for i = 2, 6 do
      local d = after[i] - before[i]
      if d ~= 0 then
        redis.call('HINCRBY', key, fields[i - 1], fmt_int(d))
      end
    end
    return
  end
  for sign, entry in pairs({ [-1] = before or false, [1] = after or false }) do
    if entry then
      for i = 2, 6 do
        if entry[i] ~= 0 then
          redis.call('HINCRBY', key, entry[1][i - 1], fmt_int(sign * entry[i]))
        end
      end
    end
  end
end
